using System.Text;

namespace XGenMM.LoadTest.Reporting;

/// <summary>A table of strings, rendered as Markdown or as aligned console text.</summary>
public sealed class Table(params string[] headers)
{
    private readonly List<string[]> _rows = [];

    public IReadOnlyList<string> Headers { get; } = headers;
    public int Count => _rows.Count;

    public void Add(params string[] cells)
    {
        if (cells.Length != Headers.Count) throw new ArgumentException($"{cells.Length} cells for {Headers.Count} columns.");
        _rows.Add(cells);
    }

    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.Append("| ").AppendJoin(" | ", Headers.Select(Escape)).AppendLine(" |");
        sb.Append('|').AppendJoin("|", Headers.Select((_, i) => i == 0 ? "---" : "---:")).AppendLine("|");
        foreach (var row in _rows) sb.Append("| ").AppendJoin(" | ", row.Select(Escape)).AppendLine(" |");
        return sb.ToString();
    }

    public string ToText()
    {
        var widths = Headers.Select((h, i) => Math.Max(h.Length, _rows.Count == 0 ? 0 : _rows.Max(r => r[i].Length))).ToArray();
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> cells)
        {
            for (int i = 0; i < cells.Count; i++)
            {
                if (i > 0) sb.Append("  ");
                sb.Append(i == 0 ? cells[i].PadRight(widths[i]) : cells[i].PadLeft(widths[i]));
            }
            sb.AppendLine();
        }
        Line(Headers);
        sb.AppendLine(new string('-', widths.Sum() + 2 * (widths.Length - 1)));
        foreach (var row in _rows) Line(row);
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("|", "\\|", StringComparison.Ordinal);
}
