using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using XGenMM.Cluster.Abstractions;

namespace XGenMM.Gateway.Tenants;

/// <summary>One tenant as configured: its id, the SHA-256 (hex) of each of its API keys, and its limits.</summary>
public sealed class TenantEntry
{
    public string Id { get; set; } = "";
    public List<string> KeySha256 { get; set; } = [];
    public TenantLimitsEntry Limits { get; set; } = new();
}

public sealed class TenantLimitsEntry
{
    public int RequestsPerMinute { get; set; } = 600;
    public long TokensPerMinute { get; set; } = 1_000_000;
    public int ConcurrentStreams { get; set; } = 32;
    public int MaxImagesPerRequest { get; set; } = 8;

    public TenantLimits ToLimits() => new(RequestsPerMinute, TokensPerMinute, ConcurrentStreams, MaxImagesPerRequest);
}

/// <summary>The file named by <c>Tenants:File</c> (a mounted Secret in Kubernetes).</summary>
public sealed class TenantFile
{
    public List<TenantEntry> Tenants { get; set; } = [];
}

/// <summary>
/// API key -> tenant. Keys are stored only as SHA-256 hashes (configuration or the <c>Tenants:File</c> secret); a
/// presented key is hashed and looked up, so neither the configuration nor a memory dump reveals a key.
/// </summary>
public sealed class TenantDirectory
{
    private static readonly JsonSerializerOptions FileJson = new() { PropertyNameCaseInsensitive = true, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
    private readonly Dictionary<string, TenantEntry> _byHash;

    public TenantDirectory(IReadOnlyList<TenantEntry> tenants)
    {
        Tenants = tenants;
        _byHash = new Dictionary<string, TenantEntry>(StringComparer.Ordinal);
        foreach (var tenant in tenants)
        {
            if (string.IsNullOrWhiteSpace(tenant.Id) || tenant.Id.Length > 64 || tenant.Id.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
                throw new InvalidOperationException($"Tenant id '{tenant.Id}' must be 1-64 characters of letters, digits, '-', '_' or '.'.");
            foreach (var hash in tenant.KeySha256)
            {
                string normalized = hash.Trim().ToLowerInvariant();
                if (normalized.Length != 64 || !normalized.All(char.IsAsciiHexDigit))
                    throw new InvalidOperationException($"Tenant '{tenant.Id}': keySha256 entries must be 64 hex digits (the SHA-256 of the key).");
                if (!_byHash.TryAdd(normalized, tenant))
                    throw new InvalidOperationException($"Tenant '{tenant.Id}': an API key hash is listed twice.");
            }
        }
    }

    public IReadOnlyList<TenantEntry> Tenants { get; }

    public static string Hash(string apiKey) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(apiKey)));

    public TenantEntry? Find(string? apiKey)
    {
        if (string.IsNullOrEmpty(apiKey) || apiKey.Length > 512) return null;
        return _byHash.GetValueOrDefault(Hash(apiKey));
    }

    /// <summary>Tenants from <c>Tenants:File</c> when set, else from the <c>Tenants:Tenants</c> configuration list.</summary>
    public static List<TenantEntry> Load(IConfiguration configuration)
    {
        string? file = configuration["Tenants:File"];
        if (!string.IsNullOrWhiteSpace(file))
        {
            if (!File.Exists(file)) throw new InvalidOperationException($"Tenants:File '{file}' does not exist.");
            try
            {
                return JsonSerializer.Deserialize<TenantFile>(File.ReadAllText(file), FileJson)?.Tenants ?? [];
            }
            catch (JsonException e)
            {
                throw new InvalidOperationException($"Tenants:File '{file}' is not valid tenant JSON: {e.Message}", e);
            }
        }
        return configuration.GetSection("Tenants:Tenants").Get<List<TenantEntry>>() ?? [];
    }

    /// <summary>A new random API key: "xg-" and 32 random bytes in URL-safe base64.</summary>
    public static string NewKey() => "xg-" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    [JsonIgnore] public bool IsEmpty => Tenants.Count == 0;
}
