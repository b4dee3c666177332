using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Client;
using XGenMM.Cluster.Hosting;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model;

namespace XGenMM.Cluster.Tests;

[Collection(nameof(SharedCluster))]
public sealed class ClusterTests(ClusterFixture fixture)
{
    private static readonly string[] Scopes = ["a", "b", "c", "d"];
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static byte[] Image(string name) => File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, name));

    private static GenerationRequest Request(string id, IReadOnlyList<int> prompt, int maxNewTokens, ImageRef[]? images = null, string tenant = "t") => new()
    {
        RequestId = id,
        Tenant = tenant,
        PromptIds = prompt.ToArray(),
        Images = images ?? [],
        MaxNewTokens = maxNewTokens,
        StopTokenIds = [],
    };

    private static async Task<(List<int> Tokens, GenerationChunk Final)> Collect(IAsyncEnumerable<GenerationChunk> stream)
    {
        var tokens = new List<int>();
        GenerationChunk? final = null;
        await foreach (var c in stream)
        {
            if (c.IsFinal) final = c;
            else tokens.Add(c.TokenId);
        }
        return (tokens, final ?? throw new InvalidOperationException("no final chunk"));
    }

    [Fact(Timeout = 120_000)]
    public async Task Every_activation_lands_on_a_silo_with_its_role()
    {
        var images = new[] { "COCO_val2014_000000486568.jpg", "synthetic_1000x300.png" }.Select(Image).ToList();
        foreach (var scope in Scopes)
            foreach (var image in images)
                await fixture.Chat.EncodeImageAsync(ClusterFixture.Key(scope, image), image, Ct);
        var decoders = await fixture.Chat.GetDecodersAsync(Ct);
        Assert.Equal(2, decoders.Length);
        foreach (var d in decoders) await Collect(fixture.Chat.GenerateAsync(Request($"p-{d.DecoderKey}", fixture.Prompt("Hi"), 2), null, Ct));
        foreach (var d in decoders) await fixture.Cluster.Client.GetGrain<IDecoderGrain>(d.DecoderKey).GetLoad();

        var management = fixture.Cluster.Client.GetGrain<IManagementGrain>(0);
        var stats = await management.GetDetailedGrainStatistics();
        var siloNames = fixture.Cluster.Silos.ToDictionary(s => s.SiloAddress, s => s.Name);
        var vision = stats.Where(s => s.GrainType.Contains("VisionGrain", StringComparison.Ordinal)).ToList();
        var decoder = stats.Where(s => s.GrainType.Contains("DecoderGrain", StringComparison.Ordinal) && !s.GrainType.Contains("Registry", StringComparison.Ordinal)).ToList();
        Assert.True(vision.Count >= 8, $"{vision.Count} vision activations");
        Assert.All(vision, s => Assert.True(ClusterFixture.IsVisionSilo(siloNames[s.SiloAddress]), $"vision grain on {siloNames[s.SiloAddress]}"));
        Assert.True(vision.Select(s => s.SiloAddress).Distinct().Count() == 2, "vision grains should spread over both vision silos");
        Assert.Equal(2, decoder.Count);
        Assert.All(decoder, s =>
        {
            Assert.False(ClusterFixture.IsVisionSilo(siloNames[s.SiloAddress]));
            Assert.StartsWith(s.SiloAddress.ToParsableString() + "|", s.GrainId.Key.ToString(), StringComparison.Ordinal);
        });
    }

    [Fact(Timeout = 60_000)]
    public void Each_silo_holds_only_the_parameters_of_its_roles()
    {
        foreach (var silo in fixture.Cluster.Silos)
        {
            var engines = silo.SiloHost.Services.GetRequiredService<EngineHost>();
            var names = engines.LoadedParameterNames;
            Assert.NotEmpty(names);
            if (ClusterFixture.IsVisionSilo(silo.Name))
                Assert.DoesNotContain(names, n => n.StartsWith("vlm.lang_model.", StringComparison.Ordinal));
            else
                Assert.All(names, n => Assert.StartsWith("vlm.lang_model.", n, StringComparison.Ordinal));
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task A_generation_through_the_grains_equals_the_in_process_engine()
    {
        var bytes = Image("COCO_val2014_000000486568.jpg");
        var prompt = fixture.Prompt("What is in the image?", 1);
        var image = await fixture.Chat.EncodeImageAsync(ClusterFixture.Key("parity", bytes), bytes, Ct);
        var (clusterTokens, final) = await Collect(fixture.Chat.GenerateAsync(Request("parity", prompt, 40, [image]), null, Ct));

        using var pipeline = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes);
        using var vision = new VisionEngine(pipeline.Model, new VisionEngineOptions());
        using var engine = new DecodeEngine(pipeline.Model, pipeline.Tokenizer, new DecodeEngineOptions { MaxSlots = 2, MaxSequenceLength = 1024 });
        var tokens = (await vision.EncodeAsync(bytes, "parity", Ct)).Tokens;
        var local = new List<int>();
        await foreach (var e in engine.Submit(new DecodeRequest { RequestId = "l", PromptIds = prompt, Images = [tokens], MaxNewTokens = 40, StopTokenIds = [] }, Ct))
            if (!e.IsFinal) local.Add(e.TokenId);

        Assert.Equal(local, clusterTokens);
        Assert.Equal(FinishKind.Length, final.Finish);
        Assert.Equal(image.Rows, final.Usage!.ImageTokens);
        Assert.NotNull(final.Decoder);
    }

    [Fact(Timeout = 120_000)]
    public async Task Tenant_quotas_hold_with_two_gateways_hammering_in_parallel()
    {
        var fromClient = fixture.Cluster.Client;
        var fromSilo = (IGrainFactory)fixture.Cluster.GetSiloServiceProvider(fixture.Cluster.Silos[2].SiloAddress).GetService(typeof(IGrainFactory))!;
        await fromClient.GetGrain<ITenantGrain>("quota").SetLimits(new TenantLimits(RequestsPerMinute: 20, TokensPerMinute: 1_000_000, ConcurrentStreams: 1000, MaxImagesPerRequest: 2));
        var attempts = Enumerable.Range(0, 30).SelectMany(_ => new[] { fromClient, fromSilo })
            .Select(g => g.GetGrain<ITenantGrain>("quota").Admit(1, 10)).ToList();
        var tickets = await Task.WhenAll(attempts);
        Assert.Equal(20, tickets.Count(t => t.Admitted));
        Assert.All(tickets.Where(t => !t.Admitted), t =>
        {
            Assert.Equal(QuotaRejection.RequestsPerMinute, t.Rejection);
            Assert.True(t.RetryAfterSeconds >= 1);
        });
        var tooMany = await fromSilo.GetGrain<ITenantGrain>("quota").Admit(3, 10);
        Assert.Equal(QuotaRejection.TooManyImages, tooMany.Rejection);

        var streams = fromClient.GetGrain<ITenantGrain>("streams");
        await streams.SetLimits(new TenantLimits(RequestsPerMinute: 1000, TokensPerMinute: 1000, ConcurrentStreams: 3));
        var leases = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => (i % 2 == 0 ? fromClient : fromSilo).GetGrain<ITenantGrain>("streams").Admit(0, 50)));
        Assert.Equal(3, leases.Count(t => t.Admitted));
        Assert.All(leases.Where(t => !t.Admitted), t => Assert.Equal(QuotaRejection.ConcurrentStreams, t.Rejection));
        // Returning a lease frees a stream and books real usage in the ledger; the token budget follows real use.
        var first = leases.First(t => t.Admitted);
        await streams.Complete(first.LeaseId!, 50, new UsageReport(100, 0, 800, 0));
        await streams.Complete(first.LeaseId!, 50, new UsageReport(100, 0, 800, 0)); // a second return is ignored
        var next = await streams.Admit(0, 50);
        Assert.False(next.Admitted);
        Assert.Equal(QuotaRejection.TokensPerMinute, next.Rejection); // 3x50 estimated + 850 corrected to real use = 1000 of 1000
        var usage = await streams.GetUsage(1);
        Assert.Equal(100, usage.Single().PromptTokens);
        Assert.Equal(800, usage.Single().CompletionTokens);
        Assert.Equal(3, usage.Single().Requests);
    }

    [Fact(Timeout = 120_000)]
    public async Task Cancelling_a_client_stream_frees_the_decoder_slot()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        int seen = 0;
        string? decoder = null;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var c in fixture.Chat.GenerateAsync(Request("cancel", fixture.Prompt("Go on and on."), 900) with { ConversationId = "cancel-conv" }, null, cts.Token))
                if (++seen == 3) await cts.CancelAsync();
        });
        var decoders = await fixture.Chat.GetDecodersAsync(Ct);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var loads = await Task.WhenAll(decoders.Select(d => fixture.Cluster.Client.GetGrain<IDecoderGrain>(d.DecoderKey).GetLoad()));
            if (loads.All(l => l.Running == 0)) break;
            decoder = string.Join(",", loads.Select(l => $"{l.DecoderKey}:{l.Running}"));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"slot still held: {decoder}");
            await Task.Delay(20, Ct);
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task Typed_rejections_cross_the_cluster()
    {
        var bad = await Assert.ThrowsAsync<ClusterRejectedException>(() => fixture.Chat.EncodeImageAsync(ClusterFixture.Key("t", [1, 2, 3]), [1, 2, 3], Ct));
        Assert.Equal(RejectionKind.BadImage, bad.Kind);
        var tooLong = await Assert.ThrowsAsync<ClusterRejectedException>(() => Collect(fixture.Chat.GenerateAsync(Request("long", fixture.Prompt("Hi"), 5000), null, Ct)));
        Assert.Equal(RejectionKind.TooLong, tooLong.Kind);
        var forged = await Assert.ThrowsAsync<ClusterRejectedException>(() =>
            fixture.Cluster.Client.GetGrain<IVisionGrain>("t/" + new string('0', 64)).Encode(Image("synthetic_1000x300.png")));
        Assert.Equal(RejectionKind.Invalid, forged.Kind);
        var missing = await Assert.ThrowsAsync<ClusterRejectedException>(() =>
            Collect(fixture.Chat.GenerateAsync(Request("missing", fixture.Prompt("What?", 1), 4, [new ImageRef("t/" + new string('1', 64), 10)]), null, Ct)));
        Assert.Equal(RejectionKind.VisionTokensMissing, missing.Kind);
    }

    [Fact(Timeout = 120_000)]
    public async Task Follow_up_turns_stick_to_their_decoder_and_reuse_the_prefix()
    {
        var prompt = fixture.Prompt("Tell me about the weather in some detail.");
        var first = await Collect(fixture.Chat.GenerateAsync(Request("turn1", prompt, 12) with { ConversationId = "affinity" }, null, Ct));
        var followUp = prompt.Concat(first.Tokens).Concat(fixture.Tokenizer.Encode("<|end|>\n<|user|>\nMore?<|end|>\n<|assistant|>\n")).ToArray();
        var second = await Collect(fixture.Chat.GenerateAsync(Request("turn2", followUp, 12) with { ConversationId = "affinity" }, null, Ct));
        Assert.Equal(first.Final.Decoder, second.Final.Decoder);
        Assert.True(second.Final.Usage!.CachedTokens >= prompt.Count, $"cached {second.Final.Usage.CachedTokens}");
    }
}
