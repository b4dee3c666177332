using System.Collections.Concurrent;
using Orleans.Configuration;
using Orleans.TestingHost;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Hosting;

namespace XGenMM.Cluster.Tests;

/// <summary>Own cluster: this test kills a decoder silo.</summary>
public sealed class RecoveryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 240_000)]
    public async Task Killing_a_decoder_silo_mid_stream_under_16_streams_loses_no_stream()
    {
        var builder = new InProcessTestClusterBuilder(4);
        builder.ConfigureSilo((options, silo) =>
        {
            silo.AddXGenMMSilo(ClusterFixture.SiloConfiguration(options.SiloName));
            silo.Configure<SiloMessagingOptions>(m => m.ResponseTimeout = TimeSpan.FromSeconds(20));
        });
        builder.ConfigureClient(client => client.Configure<ClientMessagingOptions>(m => m.ResponseTimeout = TimeSpan.FromSeconds(20)));
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        using var chat = ClusterFixture.NewChat(cluster.Client);
        var registry = cluster.Client.GetGrain<IDecoderRegistryGrain>(0);
        for (int i = 0; i < 200 && (await registry.List()).Length < 2; i++) await Task.Delay(50, Ct);
        var fixtureTokenizer = Model.Tokenization.XGenMMTokenizer.FromDirectory(Fixtures.GoldenTinyAnyRes);
        int[] Prompt(int i) => fixtureTokenizer.Encode(Model.Tokenization.ChatTemplate.Render(
            [new Model.Tokenization.ChatMessage("user", $"Stream number {i}: tell a long story.")], true, true)).ToArray();
        const int Tokens = 400;
        GenerationRequest Request(int i) => new()
        {
            RequestId = $"s{i}", Tenant = "t", ConversationId = $"c{i}", PromptIds = Prompt(i), MaxNewTokens = Tokens, StopTokenIds = [],
        };

        // Reference: every stream uninterrupted.
        var reference = new List<int>[16];
        await Task.WhenAll(Enumerable.Range(0, 16).Select(async i =>
        {
            var tokens = new List<int>();
            await foreach (var c in chat.GenerateAsync(Request(i), null, Ct)) if (!c.IsFinal) tokens.Add(c.TokenId);
            reference[i] = tokens;
        }));

        var progress = new int[16];
        var decoderOf = new ConcurrentDictionary<int, string>();
        var runs = Enumerable.Range(0, 16).Select(async i =>
        {
            var tokens = new List<int>();
            var indexes = new List<int>();
            GenerationChunk? final = null;
            await foreach (var c in chat.GenerateAsync(Request(i), null, Ct))
            {
                if (c.IsFinal) { final = c; break; }
                tokens.Add(c.TokenId);
                indexes.Add(c.Index);
                Interlocked.Increment(ref progress[i]);
            }
            return (tokens, indexes, final);
        }).ToList();

        // Kill one decoder silo once every stream is under way.
        while (progress.Any(p => p < 3)) await Task.Delay(5, Ct);
        var victim = cluster.Silos.Single(s => s.Name == "Silo_3");
        int before = progress.Sum();
        await cluster.KillSiloAsync(victim);

        var results = await Task.WhenAll(runs);
        Assert.True(before < 16 * Tokens - 200, $"the kill came too late to matter ({before} of {16 * Tokens} tokens streamed)");
        for (int i = 0; i < 16; i++)
        {
            var (tokens, indexes, final) = results[i];
            Assert.NotNull(final);
            Assert.Equal(Enumerable.Range(0, Tokens), indexes);          // each token once, no gap, no duplicate
            Assert.Equal(reference[i], tokens);                          // identical to the uninterrupted run
            Assert.Equal(FinishKind.Length, final!.Finish);
        }
        // The registry is soft state: if it lived on the killed silo it comes back empty elsewhere and the surviving
        // decoder reports again within its 1 s period.
        var survivors = await registry.List();
        for (int i = 0; i < 100 && survivors.Length != 1; i++)
        {
            await Task.Delay(100, Ct);
            survivors = await registry.List();
        }
        Assert.Single(survivors);
        Assert.DoesNotContain(victim.SiloAddress.ToParsableString(), survivors[0].DecoderKey, StringComparison.Ordinal);
    }
}
