using System.Globalization;

namespace XGenMM.LoadTest.Reporting;

/// <summary>Number formatting for tables: invariant culture, a dash for missing values.</summary>
internal static class Fmt
{
    public static string N(double value, string format = "0.0") =>
        double.IsFinite(value) ? value.ToString(format, CultureInfo.InvariantCulture) : "–";

    public static string N(double? value, string format = "0.0") => value is double v ? N(v, format) : "–";

    /// <summary>Milliseconds with a precision that suits their size.</summary>
    public static string Ms(double ms) => !double.IsFinite(ms) ? "–" : ms switch
    {
        < 10 => N(ms, "0.00"),
        < 100 => N(ms, "0.0"),
        _ => N(ms, "0"),
    };

    public static string Pct(double? fraction) => fraction is double f ? N(f * 100, "0") + "%" : "–";

    public static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
