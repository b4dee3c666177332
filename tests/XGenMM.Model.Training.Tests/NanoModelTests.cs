using XGenMM.Model.Training;

namespace XGenMM.Model.Training.Tests;

/// <summary>The committed xgenmm-nano checkpoint, through the normal loading and generation path.</summary>
public sealed class NanoModelTests
{
    [Fact]
    public void The_committed_checkpoint_is_found_as_the_default_model_and_stays_under_25_MB()
    {
        string dir = DefaultModel.Resolve(null);
        Assert.Equal(DefaultModel.Name, Path.GetFileName(dir));
        long bytes = Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
        Assert.InRange(bytes, 1, 25_000_000);
        Assert.True(File.Exists(Path.Combine(dir, "NOTICE.md")), "the tokenizer files need their NOTICE");
    }

    // Issue 4 also wants a test that the committed checkpoint answers a fixed set of held-out questions correctly. It is
    // not here yet: the committed checkpoint answers 45% of held-out questions (models/xgenmm-nano/README.md); the
    // gateway's browser test holds the page to the API's answer instead of to a known-right one for the same reason.
}
