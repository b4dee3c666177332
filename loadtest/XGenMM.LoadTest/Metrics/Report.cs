namespace XGenMM.LoadTest.Metrics;

/// <summary>Where the load stops paying: the last point before throughput stopped rising or the SLOs were missed.</summary>
public sealed record KneeResult
{
    /// <summary>Label and load (concurrency or rate) of the knee point; null when even the first point was past it.</summary>
    public string? Label { get; init; }
    public double? X { get; init; }
    public double? OutputTokensPerSecond { get; init; }
    public double? RequestsPerSecond { get; init; }
    /// <summary>Why the series stopped rising after the knee ("throughput gain 3% < 10%", "SLO attainment 62% < 90%", ...), or why there is none.</summary>
    public string Reason { get; init; } = "";
}

/// <summary>One experiment: a workload over a series of load points.</summary>
public sealed record ExperimentResult
{
    public string Name { get; init; } = "";
    public string Mode { get; init; } = "";
    public string Protocol { get; init; } = "";
    public string Model { get; init; } = "";
    /// <summary>The settings as given (API keys left out).</summary>
    public Dictionary<string, string> Settings { get; init; } = [];
    public List<PointSummary> Points { get; init; } = [];
    public KneeResult? Knee { get; init; }
    public string? Note { get; init; }
    /// <summary>Every measured request of every point, for requests.csv (not in results.json, which stays small).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public List<PointRequests> Requests { get; init; } = [];
}

/// <summary>The measured requests of one load point, in start order.</summary>
public sealed record PointRequests(string Point, IReadOnlyList<XGenMM.LoadTest.Clients.RequestRecord> Records);

/// <summary>The machine the load generator ran on (the server's too when it is local).</summary>
public sealed record MachineInfo
{
    public string CpuModel { get; init; } = "";
    public int LogicalCores { get; init; }
    public double MemoryGiB { get; init; }
    public string Os { get; init; } = "";
    public string Runtime { get; init; } = "";
    public string LoadAverage { get; init; } = "";
    /// <summary>Load average when the run began (before the tool loaded anything).</summary>
    public string LoadAverageAtStart { get; init; } = "";

    public static string ReadLoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "";
        }
        catch (IOException)
        {
            return "";
        }
    }

    public static MachineInfo Current()
    {
        string cpu = "";
        double mem = 0;
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                var lines = File.ReadLines("/proc/cpuinfo").TakeWhile(l => l.Length > 0).ToList();
                string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal) && l[name.Length..].TrimStart().StartsWith(':'))?.Split(':', 2)[1].Trim() ?? "";
                cpu = Field("model name");
                if (Field("cpu family") is { Length: > 0 } family) cpu += $" (family {family}, model {Field("model")})";
            }
            if (File.Exists("/proc/meminfo"))
            {
                var line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
                if (line is not null) mem = double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / (1024 * 1024);
            }
        }
        catch (IOException)
        {
        }
        return new MachineInfo
        {
            CpuModel = cpu,
            LogicalCores = Environment.ProcessorCount,
            MemoryGiB = Math.Round(mem, 1),
            Os = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            Runtime = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
            LoadAverage = ReadLoadAverage(),
        };
    }
}

/// <summary>The whole run, as written to results.json and read back by the <c>report</c> command.</summary>
public sealed record RunReport
{
    public string Tool { get; init; } = "xgenmm-loadtest";
    public DateTimeOffset Started { get; init; }
    public DateTimeOffset Finished { get; init; }
    public string Target { get; init; } = "";
    public string CommandLine { get; init; } = "";
    public MachineInfo Machine { get; init; } = new();
    /// <summary>Free text about the setup (which model, what else ran on the machine).</summary>
    public List<string> Notes { get; init; } = [];
    public List<ExperimentResult> Experiments { get; init; } = [];
}
