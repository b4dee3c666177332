using System.Runtime.CompilerServices;
using XGenMM.Cluster.Abstractions;
using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Hosting;

/// <summary>
/// What the gateway needs of the model without loading its weights: the id it is served under, the tokenizer and chat
/// template (prompts are rendered and tokenized here, once, so decoders receive ids), the image fingerprint, and the
/// context length that the decoders report (the decode engines own that limit; config.json's maximum is only their
/// upper bound).
/// </summary>
public sealed class ServedModel
{
    public ServedModel(string directory, string configuredId)
    {
        Directory = directory;
        Id = string.IsNullOrWhiteSpace(configuredId) ? new DirectoryInfo(directory).Name : configuredId;
        Tokenizer = XGenMMTokenizer.FromDirectory(directory);
        ChatTemplate = ChatTemplate.FromDirectory(directory);
        var config = XGenMMConfig.FromDirectory(directory);
        ImageFingerprint = ImageContentKey.ModelFingerprint(config);
        Created = new DateTimeOffset(File.GetLastWriteTimeUtc(Path.Combine(directory, "config.json"))).ToUnixTimeSeconds();
    }

    public string Directory { get; }
    public string Id { get; }
    public XGenMMTokenizer Tokenizer { get; }
    /// <summary>The checkpoint's own chat template, compiled at start (a template this server cannot render stops the start).</summary>
    public ChatTemplate ChatTemplate { get; }
    private volatile StrongBox<int>? _contextLength;

    /// <summary>The smallest context length that a live decoder reported (its engine's MaxSequenceLength, capped by the
    /// model's positions); null until the first report. The gateway's check against it is a courtesy that saves a
    /// round trip: each decode engine checks its own limit again.</summary>
    public int? ContextLength => _contextLength?.Value;

    /// <summary>Takes the context length from the decoders' load reports (every decoder that is not draining).</summary>
    public void LearnFrom(IEnumerable<DecoderLoadReport> decoders)
    {
        int smallest = decoders.Where(d => !d.Draining && d.ContextLength > 0).Select(d => d.ContextLength).DefaultIfEmpty(0).Min();
        if (smallest > 0 && smallest != _contextLength?.Value) _contextLength = new StrongBox<int>(smallest);
    }
    /// <summary>The model part of every image's content key (<see cref="ImageContentKey"/>).</summary>
    public string ImageFingerprint { get; }
    public long Created { get; }

    public static ServedModel From(IConfiguration configuration) =>
        new(DefaultModel.Resolve(configuration["Model:Path"]), configuration["Gateway:ModelId"] ?? "");
}
