using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;

namespace XGenMM.Model.Tests.Golden;

/// <summary>A silo builds and loads only the halves of the model its roles run.</summary>
public sealed class ModelPartsTests
{
    private static readonly string RealDir = Fixtures.Path("fixtures", "xgenmm-base-r-v1.5");

    [Fact]
    public void The_real_shapes_split_into_a_vision_half_and_a_language_half_with_nothing_shared_or_lost()
    {
        var config = XGenMMConfig.FromDirectory(RealDir);
        var meta = new torch.Device(DeviceType.META);
        using var all = new XGenMMModel(config, meta);
        using var vision = new XGenMMModel(config, meta, parts: ModelParts.Vision);
        using var language = new XGenMMModel(config, meta, parts: ModelParts.Language);
        var allNames = CheckpointLoader.ExpectedTensors(all).Keys.ToHashSet();
        var visionNames = CheckpointLoader.ExpectedTensors(vision).Keys.ToHashSet();
        var languageNames = CheckpointLoader.ExpectedTensors(language).Keys.ToHashSet();

        Assert.DoesNotContain(visionNames, n => n.StartsWith("vlm.lang_model.", StringComparison.Ordinal));
        Assert.All(languageNames, n => Assert.StartsWith("vlm.lang_model.", n, StringComparison.Ordinal));
        Assert.Empty(visionNames.Intersect(languageNames));
        Assert.True(allNames.SetEquals(visionNames.Union(languageNames)));
        Assert.All(visionNames, n => Assert.Equal(ModelParts.Vision, ModelPartsExtensions.PartOf(n)));
        Assert.All(languageNames, n => Assert.Equal(ModelParts.Language, ModelPartsExtensions.PartOf(n)));

        // Parameter counts of the real model: SigLIP-so400m + resampler, and Phi-3-mini with the decoupled embedding.
        long Count(XGenMMModel m) => m.parameters().Sum(p => p.NumberOfElements);
        Assert.Equal(Count(all), Count(vision) + Count(language));
        Assert.InRange(Count(vision), 400_000_000, 1_000_000_000);
        Assert.InRange(Count(language), 3_700_000_000, 3_900_000_000);
    }

    [Fact]
    public void A_partial_load_reads_its_half_of_the_checkpoint_strictly_and_equals_the_full_load_there()
    {
        using var full = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes);
        foreach (var parts in new[] { ModelParts.Vision, ModelParts.Language })
        {
            using var partial = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes, parts: parts);
            var fullParameters = full.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            var names = partial.Model.named_parameters().Select(p => p.name).ToList();
            Assert.NotEmpty(names);
            Assert.All(names, n => Assert.True(parts.Holds(n), $"{parts} holds {n}"));
            Assert.Equal(fullParameters.Keys.Count(n => parts.Holds(n)), names.Count);
            foreach (var (name, parameter) in partial.Model.named_parameters())
                Assert.True(parameter.allclose(fullParameters[name], 0, 0), $"{name} differs from the full load");
        }
    }

    [Fact]
    public void A_vision_half_encodes_images_as_the_whole_model_does_and_has_no_language_model()
    {
        using var full = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes);
        using var vision = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes, parts: ModelParts.Vision);
        byte[] image = File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, "synthetic_1000x300.png"));
        using var expected = full.EncodeImage(image);
        using var actual = vision.EncodeImage(image);
        Assert.True(actual.allclose(expected, 0, 0));
        var e = Assert.Throws<InvalidOperationException>(() => vision.Model.LanguageModel);
        Assert.Contains("without Language", e.Message, StringComparison.Ordinal);
        using var language = XGenMMPipeline.Load(Fixtures.GoldenTinyAnyRes, parts: ModelParts.Language);
        Assert.Throws<InvalidOperationException>(() => language.Model.VisionEncoder);
    }

    [Fact]
    public void A_checkpoint_still_must_hold_every_tensor_of_the_parts_that_are_built()
    {
        // The language half of a checkpoint directory that holds the whole model loads; a model built with both
        // halves from the same directory loads too; strictness is unchanged for what is built.
        var report = CheckpointLoader.Load(new XGenMMModel(XGenMMConfig.FromDirectory(Fixtures.GoldenTinyAnyRes), parts: ModelParts.Language),
            Fixtures.GoldenTinyAnyRes, skip: n => !ModelParts.Language.Holds(n));
        Assert.Contains(report.IgnoredTensors, n => n.StartsWith("vlm.vision_encoder.", StringComparison.Ordinal));
        Assert.DoesNotContain(report.IgnoredTensors, n => n.StartsWith("vlm.lang_model.", StringComparison.Ordinal));
        var ex = Assert.Throws<CheckpointException>(() => CheckpointLoader.Load(
            new XGenMMModel(XGenMMConfig.FromDirectory(Fixtures.GoldenTinyAnyRes), parts: ModelParts.Language), Fixtures.GoldenTinyAnyRes));
        Assert.Contains("Unexpected tensors", ex.Message, StringComparison.Ordinal);
    }
}
