using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Tokenization;

namespace XGenMM.Gateway.Hosting;

/// <summary>
/// What the gateway needs of the model without loading its weights: the id it is served under, the tokenizer (prompts
/// are tokenized here, once, so decoders receive ids) and the context length.
/// </summary>
public sealed class ServedModel
{
    public ServedModel(string directory, string configuredId, string configuredCard = "")
    {
        Directory = directory;
        Id = string.IsNullOrWhiteSpace(configuredId) ? new DirectoryInfo(directory).Name : configuredId;
        Tokenizer = XGenMMTokenizer.FromDirectory(directory);
        ContextLength = XGenMMConfig.FromDirectory(directory).Text.MaxPositionEmbeddings;
        Card = string.IsNullOrWhiteSpace(configuredCard) ? ReadCard(directory) : configuredCard.Trim();
        Created = new DateTimeOffset(File.GetLastWriteTimeUtc(Path.Combine(directory, "config.json"))).ToUnixTimeSeconds();
    }

    public string Directory { get; }
    public string Id { get; }
    public XGenMMTokenizer Tokenizer { get; }
    public int ContextLength { get; }
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
