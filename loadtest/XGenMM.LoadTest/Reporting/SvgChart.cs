using System.Globalization;
using System.Security;
using System.Text;

namespace XGenMM.LoadTest.Reporting;

/// <summary>A line of a chart: points in x order.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>
/// Line charts written as plain SVG: axes with round ticks (log2 on x for concurrency/rate series that double,
/// log10 on y when the values span orders of magnitude), one colour per series, a legend on the right.
/// </summary>
public static class SvgChart
{
    private static readonly string[] Palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    private const double Width = 720, Height = 420, Left = 72, Right = 190, Top = 44, Bottom = 56;

    /// <param name="marker">An x to mark with a dashed vertical line and its label (the knee).</param>
    public static string Line(string title, string xLabel, string yLabel, IReadOnlyList<ChartSeries> series, bool? logX = null, bool? logY = null,
        (double X, string Label)? marker = null)
    {
        var all = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToArray();
        var svg = new StringBuilder();
        svg.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n"));
        svg.Append(Inv($"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n"));
        svg.Append(Inv($"<text x=\"{Width / 2}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{Esc(title)}</text>\n"));
        if (all.Length == 0)
        {
            svg.Append(Inv($"<text x=\"{Width / 2}\" y=\"{Height / 2}\" text-anchor=\"middle\">no data</text>\n</svg>\n"));
            return svg.ToString();
        }
        bool lx = logX ?? (all.Min(p => p.X) > 0 && all.Max(p => p.X) / all.Min(p => p.X) >= 8);
        bool ly = logY ?? (all.Min(p => p.Y) > 0 && all.Max(p => p.Y) / all.Min(p => p.Y) >= 50);
        if (lx && all.Any(p => p.X <= 0)) lx = false;
        if (ly && all.Any(p => p.Y <= 0)) ly = false;

        var xs = all.Select(p => p.X).Distinct().Order().ToArray();
        double x0 = xs[0], x1 = xs[^1];
        if (x1 == x0) { x0 = lx ? x0 / 2 : x0 - 1; x1 = lx ? x1 * 2 : x1 + 1; }
        double y0, y1;
        double[] yTicks;
        if (ly)
        {
            y0 = Math.Pow(10, Math.Floor(Math.Log10(all.Min(p => p.Y))));
            y1 = Math.Pow(10, Math.Ceiling(Math.Log10(all.Max(p => p.Y))));
            if (y1 <= y0) y1 = y0 * 10;
            var ticks = new List<double>();
            for (double t = y0; t <= y1 * 1.0001; t *= 10) ticks.Add(t);
            yTicks = [.. ticks];
        }
        else
        {
            double max = all.Max(p => p.Y);
            double step = NiceStep(max <= 0 ? 1 : max / 5);
            y0 = 0;
            y1 = Math.Max(step, Math.Ceiling(max / step) * step);
            yTicks = [.. Enumerable.Range(0, (int)Math.Round(y1 / step) + 1).Select(i => i * step)];
        }
        double plotW = Width - Left - Right, plotH = Height - Top - Bottom;
        double X(double v) => Left + plotW * (lx ? Math.Log(v / x0) / Math.Log(x1 / x0) : (v - x0) / (x1 - x0));
        double Y(double v) => Top + plotH * (1 - (ly ? Math.Log(v / y0) / Math.Log(y1 / y0) : (v - y0) / (y1 - y0)));

        // Grid and axes.
        foreach (double t in yTicks)
        {
            svg.Append(Inv($"<line x1=\"{Left}\" y1=\"{Y(t):0.#}\" x2=\"{Left + plotW}\" y2=\"{Y(t):0.#}\" stroke=\"#e5e5e5\"/>\n"));
            svg.Append(Inv($"<text x=\"{Left - 6}\" y=\"{Y(t) + 4:0.#}\" text-anchor=\"end\">{Esc(Tick(t))}</text>\n"));
        }
        var xTicks = lx || xs.Length <= 8 ? xs : [.. Enumerable.Range(0, 6).Select(i => x0 + (x1 - x0) * i / 5)];
        foreach (double t in xTicks)
        {
            svg.Append(Inv($"<line x1=\"{X(t):0.#}\" y1=\"{Top}\" x2=\"{X(t):0.#}\" y2=\"{Top + plotH}\" stroke=\"#f0f0f0\"/>\n"));
            svg.Append(Inv($"<text x=\"{X(t):0.#}\" y=\"{Top + plotH + 18}\" text-anchor=\"middle\">{Esc(Tick(t))}</text>\n"));
        }
        svg.Append(Inv($"<rect x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"#333\"/>\n"));
        svg.Append(Inv($"<text x=\"{Left + plotW / 2}\" y=\"{Height - 14}\" text-anchor=\"middle\">{Esc(xLabel + (lx ? " (log scale)" : ""))}</text>\n"));
        svg.Append(Inv($"<text transform=\"translate(18 {Top + plotH / 2}) rotate(-90)\" text-anchor=\"middle\">{Esc(yLabel + (ly ? " (log scale)" : ""))}</text>\n"));

        if (marker is { } m && m.X >= x0 && m.X <= x1 && (!lx || m.X > 0))
        {
            svg.Append(Inv($"<line x1=\"{X(m.X):0.#}\" y1=\"{Top}\" x2=\"{X(m.X):0.#}\" y2=\"{Top + plotH}\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>\n"));
            svg.Append(Inv($"<text x=\"{X(m.X) + 4:0.#}\" y=\"{Top + 14}\" fill=\"#555\">{Esc(m.Label)}</text>\n"));
        }
        for (int i = 0; i < series.Count; i++)
        {
            string color = Palette[i % Palette.Length];
            var pts = series[i].Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!lx || p.X > 0) && (!ly || p.Y > 0)).OrderBy(p => p.X).ToArray();
            if (pts.Length > 1)
                svg.Append(Inv($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{string.Join(" ", pts.Select(p => Inv($"{X(p.X):0.#},{Y(p.Y):0.#}")))}\"/>\n"));
            foreach (var p in pts)
                svg.Append(Inv($"<circle cx=\"{X(p.X):0.#}\" cy=\"{Y(p.Y):0.#}\" r=\"3.5\" fill=\"{color}\"><title>{Esc(series[i].Name)}: {Esc(Tick(p.X))} → {Esc(Tick(p.Y))}</title></circle>\n"));
            double ly0 = Top + 10 + i * 20;
            svg.Append(Inv($"<line x1=\"{Left + plotW + 14}\" y1=\"{ly0}\" x2=\"{Left + plotW + 38}\" y2=\"{ly0}\" stroke=\"{color}\" stroke-width=\"2\"/>\n"));
            svg.Append(Inv($"<text x=\"{Left + plotW + 44}\" y=\"{ly0 + 4}\">{Esc(series[i].Name)}</text>\n"));
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>1, 2 or 5 times a power of ten, at least <paramref name="rough"/>.</summary>
    internal static double NiceStep(double rough)
    {
        double p = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        foreach (double m in new[] { 1.0, 2, 5, 10 })
            if (m * p >= rough) return m * p;
        return 10 * p;
    }

    private static string Tick(double v) => Math.Abs(v) switch
    {
        >= 1_000_000 => v.ToString("0.#e0", CultureInfo.InvariantCulture),
        >= 100 => v.ToString("0", CultureInfo.InvariantCulture),
        >= 1 => v.ToString("0.##", CultureInfo.InvariantCulture),
        0 => "0",
        _ => v.ToString("0.###", CultureInfo.InvariantCulture),
    };

    private static string Esc(string s) => SecurityElement.Escape(s) ?? "";

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
