using System.Diagnostics;
using XGenMM.Deploy.Tests.Infrastructure;

namespace XGenMM.Deploy.Tests;

/// <summary>
/// The images of deploy/images/build-local.sh, built once for the tests of the collection (cold: debootstrap and two
/// publishes; warm: only hashes). A build that fails fails every test of the collection with the script's own output.
/// </summary>
public sealed class LocalImages : IAsyncLifetime
{
    /// <summary>A cold build on a quiet 2-core machine takes about two minutes; a loaded one several times that.</summary>
    public static readonly TimeSpan BuildLimit = TimeSpan.FromMinutes(12);

    public string BuildOutput { get; private set; } = "";

    public TimeSpan BuildTime { get; private set; }

    public async ValueTask InitializeAsync()
    {
        var clock = Stopwatch.StartNew();
        BuildOutput = (await Podman.BuildImagesAsync(BuildLimit)).Output;
        BuildTime = clock.Elapsed;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

[CollectionDefinition(Name)]
public sealed class LocalImagesDefinition : ICollectionFixture<LocalImages>
{
    public const string Name = "local images";
}
