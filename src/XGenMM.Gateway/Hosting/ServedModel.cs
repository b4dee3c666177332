using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Hosting;

/// <summary>
/// What the gateway needs of the model without loading its weights: the id it is served under, the tokenizer and chat
/// template (prompts are rendered and tokenized here, once, so decoders receive ids) and the context length.
/// </summary>
public sealed class ServedModel
{
    public ServedModel(string directory, string configuredId)
    {
        Directory = directory;
        Id = string.IsNullOrWhiteSpace(configuredId) ? new DirectoryInfo(directory).Name : configuredId;
        Tokenizer = XGenMMTokenizer.FromDirectory(directory);
        ChatTemplate = ChatTemplate.FromDirectory(directory);
        ContextLength = XGenMMConfig.FromDirectory(directory).Text.MaxPositionEmbeddings;
        Created = new DateTimeOffset(File.GetLastWriteTimeUtc(Path.Combine(directory, "config.json"))).ToUnixTimeSeconds();
    }

    public string Directory { get; }
    public string Id { get; }
    public XGenMMTokenizer Tokenizer { get; }
    /// <summary>The checkpoint's own chat template, compiled at start (a template this server cannot render stops the start).</summary>
    public ChatTemplate ChatTemplate { get; }
    public int ContextLength { get; }
    public long Created { get; }

    public static ServedModel From(IConfiguration configuration) =>
        new(DefaultModel.Resolve(configuration["Model:Path"]), configuration["Gateway:ModelId"] ?? "");
}
