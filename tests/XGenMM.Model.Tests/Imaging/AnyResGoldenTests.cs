using TorchSharp;
using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using static TorchSharp.torch;

namespace XGenMM.Model.Tests.Imaging;

public sealed class AnyResGoldenTests : IDisposable
{
    private readonly SafeTensorsFile _expected = new(Path.Combine(Fixtures.GoldenTinyAnyRes, "expected.safetensors"));
    private readonly AnyResPreprocessor _preprocessor = new(XGenMMConfig.FromDirectory(Fixtures.GoldenTinyAnyRes).Preprocessor);

    public void Dispose() => _expected.Dispose();

    private PreprocessedImage Process(string file) =>
        _preprocessor.Process(ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, file))));

    [Theory]
    [InlineData(0, "COCO_val2014_000000486568.jpg")]
    [InlineData(1, "synthetic_1000x300.png")]
    public void Grid_sizes_masks_and_group_indexes_match(int k, string file)
    {
        var image = Process(file);
        Assert.Equal(_expected.ReadArray<long>($"image{k}.grid_cols_rows"), new long[] { image.GridCols, image.GridRows });
        Assert.Equal(_expected.ReadArray<long>($"image{k}.best_resolution_wh"), new long[] { image.BestResolution.Width, image.BestResolution.Height });
        Assert.Equal(_expected.ReadArray<long>($"image{k}.image_size_wh"), new long[] { image.OriginalSize.Width, image.OriginalSize.Height });
        var layout = AnyResLayout.Create(image.GridCols, image.GridRows, image.OriginalSize, 27);
        Assert.Equal(_expected.ReadArray<byte>($"image{k}.unpad_mask_grid"), layout.UnpadMaskGrid);
        Assert.Equal(_expected.ReadArray<int>($"image{k}.resampler_group_token_index").Select(i => (long)i), layout.GroupTokenIndex);
        Assert.Equal(_expected.ReadArray<byte>($"image{k}.resampler_attention_mask"), layout.KeyMask);
    }

    [Fact]
    public void PNG_pixels_are_bit_exact_with_Pillow()
    {
        var image = Process("synthetic_1000x300.png");
        Assert.Equal(_expected.ReadArray<byte>("image1.pixel_values_u8"), image.PixelsU8);
    }

    [Fact]
    public void JPEG_pixels_are_bit_exact_with_Pillow()
    {
        // Skia and Pillow 9.4 both decode with libjpeg-turbo (ISLOW IDCT, fancy upsampling): identical bytes.
        var expected = _expected.ReadArray<byte>("image0.pixel_values_u8");
        var actual = Process("COCO_val2014_000000486568.jpg").PixelsU8;
        Assert.Equal(expected.Length, actual.Length);
        int maxDiff = 0, differing = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            int d = Math.Abs(expected[i] - actual[i]);
            maxDiff = Math.Max(maxDiff, d);
            if (d != 0) differing++;
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"JPEG: max diff {maxDiff}, differing bytes {differing} of {expected.Length}");
        Assert.True(maxDiff == 0, $"max diff {maxDiff}, differing bytes {differing} of {expected.Length}");
    }

    [Fact]
    public void Normalisation_is_bit_identical_to_ToTensor_plus_Normalize()
    {
        using var scope = torch.NewDisposeScope();
        var image = Process("synthetic_1000x300.png");
        var expected = _expected.LoadTensor("image1.pixel_values_u8").to_type(ScalarType.Float32).div_(255f).sub_(0.5f).div_(0.5f);
        Assert.True(expected.eq(image.ToTensor()).all().item<bool>());
    }

    [Theory]
    [InlineData(300, 300, 384, 768)]
    [InlineData(384, 384, 384, 768)]
    [InlineData(640, 480, 768, 768)]
    [InlineData(1024, 768, 768, 768)]
    [InlineData(1920, 1080, 768, 768)]
    [InlineData(2000, 2000, 768, 768)]
    [InlineData(1000, 500, 768, 384)]
    [InlineData(3000, 800, 1152, 384)]
    [InlineData(300, 1000, 384, 1152)]
    public void Best_resolution_follows_the_spec_examples(int w, int h, int gw, int gh) =>
        Assert.Equal((gw, gh), AnyResPreprocessor.SelectBestResolution((w, h), PreprocessorConfig.DefaultAnyResGrids));
}
