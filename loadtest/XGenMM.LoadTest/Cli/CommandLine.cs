using System.Globalization;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Workload;

namespace XGenMM.LoadTest.Cli;

/// <summary>What the command line asks for: experiments to run (or reports to re-render) and where to write.</summary>
public sealed class RunRequest
{
    public List<ExperimentSettings> Experiments { get; } = [];
    public string? OutputDirectory { get; set; }
    public List<string> Notes { get; } = [];
    public bool Quiet { get; set; }
    /// <summary>The <c>report</c> command: JSON results to merge and render again.</summary>
    public List<string> ReportInputs { get; } = [];
    public bool Help { get; set; }
}

/// <summary>
/// The command line. Flags before the first <c>--experiment NAME</c> apply to every experiment; flags after it to that
/// experiment only. A plan file (<c>--plan FILE</c>) holds the same flags, one experiment per line
/// (<c>NAME: flags...</c>; <c>#</c> starts a comment; a line without a name gives shared flags).
/// </summary>
public static class CommandLine
{
    public const string Usage = """
        xgenmm-loadtest — load generator for XGenMM.Cluster (SignalR hub or OpenAI streaming API)

        usage: xgenmm-loadtest [shared flags] [--experiment NAME flags...]...
               xgenmm-loadtest --plan FILE [flags]
               xgenmm-loadtest report RESULTS.json [MORE.json...] --out DIR

        target     --url URL (http://127.0.0.1:5099)  --protocol http|signalr  --messagepack  --model ID
                   --api-key KEY  |  --tenant LABEL:KEY[:SHARE] (repeat for a tenant mix; shares are relative)
        load       --mode closed|open|sweep
                   --concurrency 1,2,4        closed loop: users, each sending its next request when the last ends
                   --rate 1,2,4 --burstiness B --max-concurrency N
                                              open loop: gamma inter-arrival times (B=1 Poisson, <1 burstier)
                   --sweep-start R --sweep-factor F --sweep-steps N --sweep-min-gain G --sweep-min-served S
                                              rate sweep: R, R*F, ... until output tok/s rises < G (0.1), the served
                                              rate falls below S (0.85) of the offered one, or an SLO is missed
                   --requests N (40) --duration S (120) per point; --warmup N (2) first, not measured
                   --request-timeout S (120) --drain-timeout S (60)
                   --refusal-pause S (0)      closed loop: a user waits S after a 429/503 before its next request
           --honor-retry-after        closed loop: ... waits the refusal's Retry-After instead (at most 60 s), as
                                      OpenAI's client libraries do; S when the refusal gave none
        workload   --input-words N (32) --input-range R (0: exact) --output-tokens N (32) --no-ignore-eos
                   --images N (0) --image-reuse unique|repeated --image-pool N --image-sizes WxH,WxH
                   --turns N (1: single-turn) --temperature T (0) --seed N (1)
        goodput    --slo-ttft-ms MS --slo-tpot-ms MS --slo-e2e-ms MS --slo-target F (0.9)
        output     --out DIR (results.json, report.md, *.svg)  --note TEXT  --quiet  --no-server-metrics
        """;

    public static RunRequest Parse(IReadOnlyList<string> args)
    {
        var request = new RunRequest();
        if (args.Count > 0 && args[0] == "report")
        {
            for (int i = 1; i < args.Count; i++)
            {
                if (args[i] == "--out") request.OutputDirectory = Value(args, ref i);
                else if (args[i] is "--note") request.Notes.Add(Value(args, ref i));
                else if (args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"Unknown flag for report: {args[i]}");
                else request.ReportInputs.Add(args[i]);
            }
            if (request.ReportInputs.Count == 0) throw new ArgumentException("report needs at least one results.json.");
            return request;
        }

        var shared = new List<string>();
        var experiments = new List<(string Name, List<string> Flags)>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a is "--help" or "-h") { request.Help = true; return request; }
            if (a == "--experiment") { experiments.Add((Value(args, ref i), [])); continue; }
            if (a == "--plan")
            {
                foreach (var (name, flags) in ReadPlan(File.ReadAllText(Value(args, ref i))))
                {
                    if (name is null) shared.AddRange(flags);
                    else experiments.Add((name, flags));
                }
                continue;
            }
            if (a == "--out") { request.OutputDirectory = Value(args, ref i); continue; }
            if (a == "--quiet") { request.Quiet = true; continue; }
            if (a == "--run-note") { request.Notes.Add(Value(args, ref i)); continue; }
            (experiments.Count > 0 ? experiments[^1].Flags : shared).Add(a);
        }
        if (experiments.Count == 0) experiments.Add(("run", []));
        foreach (var (name, flags) in experiments)
        {
            var s = new ExperimentSettings { Name = name };
            // An experiment's own flags come last and win; its tenants replace the shared ones.
            Apply(s, flags.Any(IsTenantFlag) ? [.. WithoutTenants(shared), .. flags] : [.. shared, .. flags]);
            request.Experiments.Add(s);
        }
        return request;
    }

    private static bool IsTenantFlag(string f) => f is "--tenant" or "--api-key";

    private static IEnumerable<string> WithoutTenants(List<string> flags)
    {
        for (int i = 0; i < flags.Count; i++)
        {
            if (IsTenantFlag(flags[i])) { i++; continue; }
            yield return flags[i];
        }
    }

    /// <summary>Plan lines "NAME: flags" (an experiment) or "flags" (shared); quotes group words; # comments.</summary>
    internal static IEnumerable<(string? Name, List<string> Flags)> ReadPlan(string text)
    {
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            int hash = line.IndexOf('#', StringComparison.Ordinal);
            if (hash >= 0) line = line[..hash].Trim();
            if (line.Length == 0) continue;
            string? name = null;
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && !line[..colon].Contains(' ', StringComparison.Ordinal) && !line.StartsWith("--", StringComparison.Ordinal))
            {
                name = line[..colon];
                line = line[(colon + 1)..];
            }
            yield return (name, Split(line));
        }
    }

    internal static List<string> Split(string line)
    {
        var words = new List<string>();
        var word = new System.Text.StringBuilder();
        bool quoted = false, any = false;
        foreach (char c in line)
        {
            if (c == '"') { quoted = !quoted; any = true; continue; }
            if (char.IsWhiteSpace(c) && !quoted)
            {
                if (any) words.Add(word.ToString());
                word.Clear();
                any = false;
                continue;
            }
            word.Append(c);
            any = true;
        }
        if (any) words.Add(word.ToString());
        return words;
    }

    private static void Apply(ExperimentSettings s, List<string> args)
    {
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            switch (a)
            {
                case "--url": s.Url = new Uri(Value(args, ref i).TrimEnd('/') + "/"); break;
                case "--protocol": s.Protocol = Value(args, ref i).ToLowerInvariant(); break;
                case "--messagepack": s.MessagePack = true; break;
                case "--model": s.Model = Value(args, ref i); break;
                case "--api-key": s.Tenants.Add(new TenantSpec("default", Value(args, ref i), 1)); break;
                case "--tenant": s.Tenants.Add(ParseTenant(Value(args, ref i))); break;
                case "--mode": s.Mode = Enum.Parse<LoadMode>(Value(args, ref i), ignoreCase: true); break;
                case "--concurrency":
                    s.Concurrency.Clear();
                    s.Concurrency.AddRange(List(Value(args, ref i)).Select(Int));
                    break;
                case "--rate":
                    s.Rates.Clear();
                    s.Rates.AddRange(List(Value(args, ref i)).Select(Double));
                    break;
                case "--burstiness": s.Burstiness = Double(Value(args, ref i)); break;
                case "--max-concurrency": s.MaxConcurrency = Int(Value(args, ref i)); break;
                case "--sweep-start": s.SweepStart = Double(Value(args, ref i)); break;
                case "--sweep-factor": s.SweepFactor = Double(Value(args, ref i)); break;
                case "--sweep-steps": s.SweepSteps = Int(Value(args, ref i)); break;
                case "--sweep-min-gain": s.SweepMinGain = Double(Value(args, ref i)); break;
                case "--sweep-min-served": s.SweepMinServed = Double(Value(args, ref i)); break;
                case "--requests": s.Requests = Int(Value(args, ref i)); break;
                case "--duration": s.DurationSeconds = Double(Value(args, ref i)); break;
                case "--warmup": s.Warmup = Int(Value(args, ref i)); break;
                case "--request-timeout": s.RequestTimeoutSeconds = Double(Value(args, ref i)); break;
                case "--drain-timeout": s.DrainTimeoutSeconds = Double(Value(args, ref i)); break;
                case "--refusal-pause": s.RefusalPauseSeconds = Double(Value(args, ref i)); break;
                case "--honor-retry-after": s.HonorRetryAfter = true; break;
                case "--input-words": s.InputWords = Int(Value(args, ref i)); break;
                case "--input-range": s.InputRange = Double(Value(args, ref i)); break;
                case "--output-tokens": s.OutputTokens = Int(Value(args, ref i)); break;
                case "--no-ignore-eos": s.IgnoreEos = false; break;
                case "--ignore-eos": s.IgnoreEos = true; break;
                case "--temperature": s.Temperature = (float)Double(Value(args, ref i)); break;
                case "--images": s.ImagesPerRequest = Int(Value(args, ref i)); break;
                case "--image-reuse": s.ImageReuse = Enum.Parse<ImageReuse>(Value(args, ref i), ignoreCase: true); break;
                case "--image-pool": s.ImagePool = Int(Value(args, ref i)); break;
                case "--image-sizes":
                    s.ImageSizes.Clear();
                    s.ImageSizes.AddRange(List(Value(args, ref i)).Select(ImageFactory.ParseSize));
                    break;
                case "--turns": s.Turns = Int(Value(args, ref i)); break;
                case "--seed": s.Seed = Int(Value(args, ref i)); break;
                case "--slo-ttft-ms": s.Slo = s.Slo with { TtftMs = Double(Value(args, ref i)) }; break;
                case "--slo-tpot-ms": s.Slo = s.Slo with { TpotMs = Double(Value(args, ref i)) }; break;
                case "--slo-e2e-ms": s.Slo = s.Slo with { E2eMs = Double(Value(args, ref i)) }; break;
                case "--slo-target": s.SloTarget = Double(Value(args, ref i)); break;
                case "--no-server-metrics": s.ScrapeServer = false; break;
                case "--note": s.Note = Value(args, ref i); break;
                default: throw new ArgumentException($"Unknown flag '{a}' (see --help).");
            }
        }
    }

    /// <summary>LABEL:KEY[:SHARE]; the share defaults to 1.</summary>
    internal static TenantSpec ParseTenant(string text)
    {
        var parts = text.Split(':');
        if (parts.Length is < 2 or > 3 || parts[0].Length == 0 || parts[1].Length == 0)
            throw new ArgumentException($"--tenant takes LABEL:KEY[:SHARE], not '{text}'.");
        double share = parts.Length == 3 ? Double(parts[2]) : 1;
        if (share < 0) throw new ArgumentException($"The share of tenant {parts[0]} is negative.");
        return new TenantSpec(parts[0], parts[1], share);
    }

    private static string Value(IReadOnlyList<string> args, ref int i)
    {
        if (i + 1 >= args.Count) throw new ArgumentException($"{args[i]} needs a value.");
        return args[++i];
    }

    private static string[] List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int Int(string text) => int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture);

    private static double Double(string text) => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
}
