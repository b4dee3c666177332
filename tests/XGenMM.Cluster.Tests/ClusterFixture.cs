using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.TestingHost;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Client;
using XGenMM.Cluster.Hosting;
using XGenMM.Model;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using XGenMM.Model.Tokenization;

namespace XGenMM.Cluster.Tests;

/// <summary>
/// A real in-process Orleans cluster of four silos serving the tiny golden checkpoint: Silo_0 and Silo_1 have the
/// vision role, Silo_2 and Silo_3 the decoder role (one CPU device each).
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public InProcessTestCluster Cluster { get; private set; } = null!;
    public ClusterChat Chat { get; private set; } = null!;
    public XGenMMTokenizer Tokenizer { get; } = XGenMMTokenizer.FromDirectory(Fixtures.GoldenTinyAnyRes);

    private static readonly string ImageFingerprint = ImageContentKey.ModelFingerprint(XGenMMConfig.FromDirectory(Fixtures.GoldenTinyAnyRes));

    /// <summary>An image's content key for a tenant scope, as the gateway computes it.</summary>
    public static string Key(string scope, byte[] image) => ImageContentKey.Compute(image, scope, ImageFingerprint);

    public static bool IsVisionSilo(string siloName) => siloName is "Silo_0" or "Silo_1";

    public static IConfiguration SiloConfiguration(string siloName) => new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Silo:Roles"] = IsVisionSilo(siloName) ? "vision" : "decoder",
        ["Silo:DrainTimeoutSeconds"] = "5",
        ["Model:Path"] = Fixtures.GoldenTinyAnyRes,
        ["Engine:Decode:MaxSlots"] = "16",
        ["Engine:Decode:MaxSequenceLength"] = "1024",
        ["Engine:Decode:KvCacheBytes"] = (1L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Engine:Vision:MaxBatchWaitMilliseconds"] = "2",
    }).Build();

    public async ValueTask InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(4);
        builder.ConfigureSilo((options, silo) =>
        {
            silo.AddXGenMMSilo(SiloConfiguration(options.SiloName));
            silo.Configure<SiloMessagingOptions>(m => m.ResponseTimeout = TimeSpan.FromSeconds(20));
        });
        builder.ConfigureClient(client => client.Configure<ClientMessagingOptions>(m => m.ResponseTimeout = TimeSpan.FromSeconds(20)));
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        Chat = NewChat(Cluster.Client);
        // Decoders announce themselves once their silo has started.
        var registry = Cluster.Client.GetGrain<IDecoderRegistryGrain>(0);
        for (int i = 0; i < 200 && (await registry.List()).Length < 2; i++) await Task.Delay(50);
    }

    /// <summary>Admission control off: these tests load a CPU decoder far past any TTFT target on purpose and test
    /// routing and recovery, not shedding (CapacityModelTests and the gateway's AdmissionTests do).</summary>
    public static ClusterChat NewChat(IGrainFactory grains) =>
        new(grains, Options.Create(new ClusterChatOptions { RegistryRefresh = TimeSpan.Zero, MaxRecoveryAttempts = 3, Admission = { TtftTargetSeconds = 0 } }), NullLogger<ClusterChat>.Instance);

    public IReadOnlyList<int> Prompt(string question, int images = 0) =>
        Tokenizer.Encode(ChatTemplate.Render([new ChatMessage("user", string.Concat(Enumerable.Repeat("<image>\n", images)) + question)], true, true)).ToArray();

    public async ValueTask DisposeAsync()
    {
        Chat.Dispose();
        await Cluster.DisposeAsync();
    }
}

[CollectionDefinition(nameof(SharedCluster))]
public sealed class SharedCluster : ICollectionFixture<ClusterFixture>;
