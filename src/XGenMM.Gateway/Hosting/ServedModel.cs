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
    public ServedModel(string directory, string configuredId, string configuredCard = "")
    {
        Directory = directory;
        Id = string.IsNullOrWhiteSpace(configuredId) ? new DirectoryInfo(directory).Name : configuredId;
        Tokenizer = XGenMMTokenizer.FromDirectory(directory);
        ChatTemplate = ChatTemplate.FromDirectory(directory);
        var config = XGenMMConfig.FromDirectory(directory);
        ImageFingerprint = ImageContentKey.ModelFingerprint(config);
        Card = string.IsNullOrWhiteSpace(configuredCard) ? ReadCard(directory) : configuredCard.Trim();
        Created = new DateTimeOffset(File.GetLastWriteTimeUtc(Path.Combine(directory, "config.json"))).ToUnixTimeSeconds();
    }

    public string Directory { get; }
    public string Id { get; }
    public XGenMMTokenizer Tokenizer { get; }
    /// <summary>The checkpoint's own chat template, compiled at start (a template this server cannot render stops the start).</summary>
    public ChatTemplate ChatTemplate { get; }
    private volatile int _contextLength;

    /// <summary>The smallest context length that a live decoder reported (its engine's MaxSequenceLength, capped by the
    /// model's positions); null until the first report. The gateway's check against it is a courtesy that saves a
    /// round trip: each decode engine checks its own limit again.</summary>
    public int? ContextLength => _contextLength is > 0 and var length ? length : null;

    /// <summary>Takes the context length from the decoders' load reports (every decoder that is not draining).</summary>
    public void LearnFrom(IEnumerable<DecoderLoadReport> decoders)
    {
        int smallest = decoders.Where(d => !d.Draining && d.ContextLength > 0).Select(d => d.ContextLength).DefaultIfEmpty(0).Min();
        if (smallest > 0) _contextLength = smallest;
    }
    /// <summary>The model part of every image's content key (<see cref="ImageContentKey"/>).</summary>
    public string ImageFingerprint { get; }
    public long Created { get; }
    /// <summary>One line on what the model is and knows, for people choosing what to ask it (the chat page shows it);
    /// empty when neither <c>Gateway:ModelCard</c> nor the model's README.md says.</summary>
    public string Card { get; }

    /// <summary>Longest card taken from a README: a paragraph, not a page.</summary>
    internal const int MaxCardChars = 400;

    public static ServedModel From(IConfiguration configuration) =>
        new(DefaultModel.Resolve(configuration["Model:Path"]), configuration["Gateway:ModelId"] ?? "", configuration["Gateway:ModelCard"] ?? "");

    /// <summary>The first paragraph of the model directory's README.md after its title (a model card's summary by
    /// convention), unwrapped and without inline code marks; headings, front matter and blank lines before it are skipped.</summary>
    internal static string ReadCard(string directory)
    {
        var path = Path.Combine(directory, "README.md");
        if (!File.Exists(path)) return "";
        var lines = File.ReadAllLines(path);
        int i = 0;
        // Hugging Face model cards start with YAML front matter between --- lines.
        if (lines.Length > 0 && lines[0].Trim() == "---")
        {
            i = Array.FindIndex(lines, 1, l => l.Trim() == "---") + 1;
            if (i == 0) return "";
        }
        while (i < lines.Length && (string.IsNullOrWhiteSpace(lines[i]) || lines[i].TrimStart().StartsWith('#'))) i++;
        var paragraph = new List<string>();
        for (; i < lines.Length && !string.IsNullOrWhiteSpace(lines[i]) && !lines[i].TrimStart().StartsWith('#'); i++)
            paragraph.Add(lines[i].Trim());
        var card = string.Join(' ', paragraph).Replace("`", "", StringComparison.Ordinal);
        return card.Length <= MaxCardChars ? card : card[..(MaxCardChars - 1)].TrimEnd() + "…";
    }
}
