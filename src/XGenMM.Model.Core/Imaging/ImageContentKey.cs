using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using XGenMM.Model.Configuration;

namespace XGenMM.Model.Imaging;

/// <summary>
/// The one identity of an image from the gateway to the vision engine's cache: hex SHA-256 over the tenant scope, the
/// model fingerprint (what the tokens depend on besides the bytes: preprocessing and the vision/resampler shapes) and
/// the bytes. The gateway computes it once per image per request; it names the vision grain, keys the vision engine's
/// cache and tells prefix reuse which image sits behind an &lt;image&gt; placeholder. Tenants never share an entry
/// unless they share a scope.
/// </summary>
public static class ImageContentKey
{
    private static long _computed;

    /// <summary>How many keys this process has computed (tests count the hashing per request with it).</summary>
    public static long Computed => Interlocked.Read(ref _computed);

    public static string Compute(ReadOnlySpan<byte> image, string scope, string modelFingerprint)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentNullException.ThrowIfNull(modelFingerprint);
        Interlocked.Increment(ref _computed);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        // Length-prefixed fields, so that no two (scope, fingerprint, bytes) triples hash the same stream.
        Span<byte> length = stackalloc byte[8];
        foreach (var field in new[] { Encoding.UTF8.GetBytes(scope), Encoding.UTF8.GetBytes(modelFingerprint) })
        {
            BinaryPrimitives.WriteInt64LittleEndian(length, field.Length);
            sha.AppendData(length);
            sha.AppendData(field);
        }
        BinaryPrimitives.WriteInt64LittleEndian(length, image.Length);
        sha.AppendData(length);
        sha.AppendData(image);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>What the vision tokens of an image depend on besides its bytes, read from config.json: the gateway and
    /// the vision silos derive the same string from the same checkpoint.</summary>
    public static string ModelFingerprint(XGenMMConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var p = config.Preprocessor;
        return new StringBuilder()
            .Append("size=").Append(p.ImageSize)
            .Append(";mean=").AppendJoin(',', p.ImageMean)
            .Append(";std=").AppendJoin(',', p.ImageStd)
            .Append(";grids=").AppendJoin(',', (p.AnyResGrids ?? []).Select(g => $"{g.Width}x{g.Height}"))
            .Append(";anyres=").Append(config.AnyRes)
            .Append(";patch=").Append(config.Vision.PatchSize)
            .Append(";vision=").Append(config.Vision.HiddenSize).Append('x').Append(config.Vision.NumHiddenLayers)
            .Append(";latents=").Append(config.Resampler.NumVisTokens)
            .Append(";dim=").Append(config.Text.HiddenSize)
            .ToString();
    }
}
