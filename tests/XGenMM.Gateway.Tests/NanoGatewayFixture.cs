using XGenMM.Model;
using XGenMM.Model.Training.Data;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// The gateway serving the trained xgenmm-nano model, for the tests that check a right answer from a real client
/// (the chat page in Chromium, the OpenAI npm client).
/// </summary>
public sealed class NanoGatewayFixture : GatewayFixture
{
    /// <summary>The model's own name, whichever directory it is loaded from.</summary>
    public const string ModelName = DefaultModel.Name;

    /// <summary>The longest answer a test may ask for (the stop test needs one that is still streaming when it presses stop).</summary>
    public const int MaxCompletionTokens = 1024;

    protected override string ModelPath => ResolveModel();

    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["Gateway:ModelId"] = ModelName;
        settings["Gateway:Limits:MaxCompletionTokens"] = MaxCompletionTokens.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The committed models/xgenmm-nano of this repository.</summary>
    public static string ResolveModel()
    {
        string committed = Path.Combine(RepositoryRoot(), "models", DefaultModel.Name);
        if (File.Exists(Path.Combine(committed, "config.json")) && File.Exists(Path.Combine(committed, "model.safetensors"))) return committed;
        throw new DirectoryNotFoundException($"The committed {DefaultModel.Name} model was not found: no checkpoint (config.json, model.safetensors) in {committed}.");
    }

    /// <summary>The folder that holds XGenMM.Cluster.sln, found by walking up from the test binaries.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "XGenMM.Cluster.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("The repository root (the folder with XGenMM.Cluster.sln) was not found above " + AppContext.BaseDirectory);
    }
}

[CollectionDefinition(Name)]
public sealed class NanoGatewayTests : ICollectionFixture<NanoGatewayFixture>
{
    public const string Name = "nano gateway";
}

/// <summary>
/// A picture drawn by the training data's own renderer, so the right answers are known: three shapes of distinct
/// kinds and colours in distinct cells of the 3x3 layout the training scenes use, on a plain grey background.
/// </summary>
internal static class NanoScene
{
    private static readonly Dictionary<string, ShapeColor> Colors = ShapeColor.All.ToDictionary(c => c.Name, StringComparer.Ordinal);

    public static readonly Scene Scene = new(600, 400, Background: 140, Noisy: false, NoiseSeed: 7,
    [
        new SceneShape(ShapeKind.Star, Colors["yellow"], 100, 70, 45),
        new SceneShape(ShapeKind.Circle, Colors["blue"], 300, 200, 45),
        new SceneShape(ShapeKind.Square, Colors["red"], 500, 330, 45),
    ]);

    // Questions in the training data's wording, with the answers this scene makes right.
    public const string ColorQuestion = "What color is the star?";
    public const string CountQuestion = "How many shapes are there?";
    public const string CountAnswer = "3";
    public const string DescribeQuestion = "Describe the image in one sentence.";

    public static byte[] Png() => SceneRenderer.RenderPng(Scene);

    /// <summary>Writes the picture to a new temporary file (a browser attaches files by path) and returns its path.</summary>
    public static string WritePng()
    {
        string path = Path.Combine(Path.GetTempPath(), $"xgenmm-scene-{Guid.NewGuid():N}.png");
        File.WriteAllBytes(path, Png());
        return path;
    }

    /// <summary>An answer in the form the training data compares answers in (lower case, no final period).</summary>
    public static string Normalize(string answer) => VqaSample.Normalize(answer);
}
