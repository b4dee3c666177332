using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Orleans.TestingHost;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Client;
using XGenMM.Cluster.Hosting;
using XGenMM.Engine.Decoding;
using XGenMM.Model.Tokenization;

// Cluster benchmark (issue 6): what streaming through Orleans adds to a generation, against calling the same decode
// engine in the same process. One silo (both roles) and an Orleans client talking to it over loopback TCP; the same
// greedy, fixed-length generation is run alternately both ways. Per-token overhead = gap between consecutive tokens
// as the caller sees them, Orleans minus in-process (p50 and mean); TTFT overhead likewise.
//   dotnet run -c Release --project bench/XGenMM.Cluster.Benchmarks -- [model dir] [runs=20] [tokens=64] [streams=1]
string modelDir = args.Length > 0 && args[0] != "-" ? args[0] : FindGoldenTiny();
int runs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;
int tokens = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 64;
int streams = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 1;

var settings = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
{
    ["Silo:Roles"] = "vision,decoder",
    ["Model:Path"] = modelDir,
    ["Engine:Decode:MaxSlots"] = "32",
    ["Engine:Decode:MaxSequenceLength"] = "1024",
    ["Engine:Decode:PrefixReuse"] = "false",
    ["Engine:Decode:KvCacheBytes"] = (1L << 30).ToString(CultureInfo.InvariantCulture),
}).Build();
var builder = new InProcessTestClusterBuilder(1);
builder.ConfigureSilo((_, silo) => silo.AddXGenMMSilo(settings));
await using var cluster = builder.Build();
await cluster.DeployAsync();
var registry = cluster.Client.GetGrain<IDecoderRegistryGrain>(0);
for (int i = 0; i < 200 && (await registry.List()).Length == 0; i++) await Task.Delay(50);
var engine = cluster.GetSiloServiceProvider(cluster.Silos[0].SiloAddress).GetRequiredService<EngineHost>().Decoders.Values.Single();
var chat = new ClusterChat(cluster.Client, Options.Create(new ClusterChatOptions { RegistryRefresh = TimeSpan.FromSeconds(5), Admission = { TtftTargetSeconds = 0 } }), NullLogger<ClusterChat>.Instance);
var tokenizer = XGenMMTokenizer.FromDirectory(modelDir);
int[] prompt = [.. tokenizer.Encode(ChatTemplate.Render([new ChatMessage("user", "Describe a busy street market in the morning.")], true, true))];
Console.WriteLine($"model {modelDir}; prompt {prompt.Length} tokens, {tokens} new tokens (ignore EOS), {streams} concurrent stream(s), {runs} runs each way");

var inProcess = new Sample();
var viaOrleans = new Sample();
for (int run = -3; run < runs; run++) // 3 warm-up rounds, not recorded
{
    await Task.WhenAll(Enumerable.Range(0, streams).Select(s => InProcessAsync(run < 0 ? null : inProcess, $"e{run}-{s}")));
    await Task.WhenAll(Enumerable.Range(0, streams).Select(s => OrleansAsync(run < 0 ? null : viaOrleans, $"o{run}-{s}")));
}

Console.WriteLine();
Console.WriteLine("| path | TTFT p50 ms | TTFT mean ms | token gap p50 ms | token gap p99 ms | token gap mean ms |");
Console.WriteLine("|---|---|---|---|---|---|");
Row("engine in-process", inProcess);
Row("through Orleans", viaOrleans);
Console.WriteLine();
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"overhead per token: p50 {viaOrleans.GapP50 - inProcess.GapP50:F3} ms, mean {viaOrleans.GapMean - inProcess.GapMean:F3} ms (goal < 1 ms p50); " +
    $"TTFT overhead: p50 {viaOrleans.TtftP50 - inProcess.TtftP50:F2} ms, mean {viaOrleans.TtftMean - inProcess.TtftMean:F2} ms; " +
    $"ratio of mean gaps {viaOrleans.GapMean / inProcess.GapMean:F3}"));

async Task InProcessAsync(Sample? sample, string id)
{
    long start = Stopwatch.GetTimestamp(), last = 0;
    await foreach (var e in engine.Submit(new DecodeRequest { RequestId = id, PromptIds = prompt, MaxNewTokens = tokens, StopTokenIds = [] }))
    {
        if (e.IsFinal) break;
        last = Record(sample, start, last);
    }
}

async Task OrleansAsync(Sample? sample, string id)
{
    long start = Stopwatch.GetTimestamp(), last = 0;
    var request = new GenerationRequest { RequestId = id, Tenant = "bench", PromptIds = prompt, MaxNewTokens = tokens, StopTokenIds = [] };
    await foreach (var chunk in chat.GenerateAsync(request))
    {
        if (chunk.IsFinal) break;
        last = Record(sample, start, last);
    }
}

static long Record(Sample? sample, long start, long last)
{
    long now = Stopwatch.GetTimestamp();
    if (sample is not null)
    {
        if (last == 0) sample.Ttft.Add(Stopwatch.GetElapsedTime(start, now).TotalMilliseconds);
        else sample.Gaps.Add(Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
    }
    return now;
}

static void Row(string name, Sample s) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"| {name} | {s.TtftP50:F2} | {s.TtftMean:F2} | {s.GapP50:F3} | {s.GapP99:F3} | {s.GapMean:F3} |"));

static string FindGoldenTiny()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        foreach (var candidate in new[] { Path.Combine(dir.FullName, "shared", "fixtures", "golden", "tiny-anyres") })
            if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
    throw new DirectoryNotFoundException("Pass a model directory: the shared golden tiny checkpoint was not found.");
}

internal sealed class Sample
{
    public List<double> Ttft { get; } = [];
    public List<double> Gaps { get; } = [];
    public double TtftP50 => Percentile(Ttft, 0.5);
    public double TtftMean => Ttft.Average();
    public double GapP50 => Percentile(Gaps, 0.5);
    public double GapP99 => Percentile(Gaps, 0.99);
    public double GapMean => Gaps.Average();

    private static double Percentile(List<double> values, double q)
    {
        var sorted = values.Order().ToArray();
        return sorted[(int)Math.Round(q * (sorted.Length - 1))];
    }
}
