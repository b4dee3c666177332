using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model.Imaging;

namespace XGenMM.Engine.Tests;

public sealed class VisionEngineTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 60_000)]
    public async Task Tokens_equal_the_pipeline_encoder_and_round_trip_through_the_compact_form()
    {
        var pipeline = TestModels.TinyPipeline;
        using var engine = new VisionEngine(pipeline.Model, new VisionEngineOptions { WireFormat = VisionTokenFormat.Float32 });
        var encoded = await engine.EncodeAsync(TestModels.CocoJpeg, "t", Ct);
        using var expected = pipeline.EncodeImage(TestModels.CocoJpeg);
        using var actual = encoded.Tokens.ToTensor(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-4, atol: 1e-5));

        using var half = new VisionEngine(pipeline.Model, new VisionEngineOptions());
        var compact = (await half.EncodeAsync(TestModels.CocoJpeg, "t", Ct)).Tokens;
        Assert.Equal(VisionTokenFormat.Float16, compact.Format);
        Assert.Equal(encoded.Tokens.Data.Length / 2, compact.Data.Length);
        using var widened = compact.ToTensor(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        Assert.True(widened.allclose(expected, rtol: 1e-2, atol: 1e-2));
    }

    [Fact(Timeout = 60_000)]
    public async Task The_EXIF_orientation_tag_is_ignored_unless_ApplyExifOrientation_is_set()
    {
        var pipeline = TestModels.TinyPipeline;
        var plain = TestModels.CocoJpeg;
        // An APP1 Exif segment right after SOI: big-endian TIFF, one IFD entry, Orientation = 6 (rotate 90° clockwise).
        byte[] exif =
        [
            0xFF, 0xE1, 0x00, 0x22, (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,
            (byte)'M', (byte)'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,
            0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        byte[] tagged = [.. plain[..2], .. exif, .. plain[2..]];

        using var byDefault = new VisionEngine(pipeline.Model, new VisionEngineOptions { WireFormat = VisionTokenFormat.Float32 });
        using var unrotated = pipeline.EncodeImage(plain);
        using var fromDefault = (await byDefault.EncodeAsync(tagged, "t", Ct)).Tokens.ToTensor(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(unrotated.shape, fromDefault.shape);
        Assert.True(fromDefault.allclose(unrotated, rtol: 1e-4, atol: 1e-5), "by default the model sees the stored pixels, as the original pipeline does");

        using var applying = new VisionEngine(pipeline.Model, new VisionEngineOptions { WireFormat = VisionTokenFormat.Float32, ApplyExifOrientation = true });
        using var rotated = pipeline.Model.EncodeImage(pipeline.Preprocessor.Process(ImageDecoder.Decode(tagged, applyExifOrientation: true)));
        using var fromApplying = (await applying.EncodeAsync(tagged, "t", Ct)).Tokens.ToTensor(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(rotated.shape, fromApplying.shape);
        Assert.True(fromApplying.allclose(rotated, rtol: 1e-4, atol: 1e-5), "with the option the model sees the upright image");
        Assert.False(rotated.shape.SequenceEqual(unrotated.shape) && rotated.allclose(unrotated, rtol: 1e-4, atol: 1e-5), "rotating changes what the model sees");
    }

    [Fact(Timeout = 60_000)]
    public async Task The_cache_hits_by_content_and_scope_and_concurrent_requests_share_one_encode()
    {
        using var engine = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions { MaxBatchWaitMilliseconds = 20 });
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => engine.EncodeAsync(TestModels.CocoJpeg, "tenant-a", Ct)));
        Assert.Equal(1, concurrent.Count(e => e.Outcome == VisionCacheOutcome.Miss));
        Assert.Equal(3, concurrent.Count(e => e.Outcome == VisionCacheOutcome.Coalesced));
        Assert.All(concurrent, e => Assert.Same(concurrent[0].Tokens, e.Tokens));
        Assert.Equal(1, engine.GetLoad().ImagesEncoded);

        var again = await engine.EncodeAsync(TestModels.CocoJpeg, "tenant-a", Ct);
        Assert.Equal(VisionCacheOutcome.Hit, again.Outcome);
        // Another tenant scope never shares the entry, even for the same bytes.
        var otherTenant = await engine.EncodeAsync(TestModels.CocoJpeg, "tenant-b", Ct);
        Assert.Equal(VisionCacheOutcome.Miss, otherTenant.Outcome);
        Assert.NotEqual(again.Tokens.ContentKey, otherTenant.Tokens.ContentKey);
        var load = engine.GetLoad();
        Assert.Equal((1, 2, 3, 2, 0), (load.Hits, load.Misses, load.Coalesced, load.ImagesEncoded, load.PendingImages));
    }

    [Fact(Timeout = 60_000)]
    public async Task Images_are_batched_and_the_cache_is_bounded_by_bytes()
    {
        var images = Enumerable.Range(0, 6).Select(i => Png(100 + 40 * i, 200)).ToList();
        using var engine = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions { MaxBatchImages = 8, MaxBatchWaitMilliseconds = 200 });
        var all = await Task.WhenAll(images.Select(b => engine.EncodeAsync(b, "s", Ct)));
        var load = engine.GetLoad();
        Assert.Equal(6, load.ImagesEncoded);
        Assert.True(load.Batches < 6, $"{load.Batches} batches for 6 images");

        long one = all[0].Tokens.Data.LongLength;
        using var small = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions { CacheBytes = one * 2 });
        foreach (var b in images.Take(3)) await small.EncodeAsync(b, "s", Ct);
        Assert.True(small.GetLoad().CacheBytes <= one * 2);
        Assert.Equal(VisionCacheOutcome.Miss, (await small.EncodeAsync(images[0], "s", Ct)).Outcome); // evicted (LRU)
        Assert.Equal(VisionCacheOutcome.Hit, (await small.EncodeAsync(images[0], "s", Ct)).Outcome);
    }

    [Fact(Timeout = 60_000)]
    public async Task Bad_images_fail_their_own_request_with_a_reason_and_are_not_cached()
    {
        using var engine = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions { MaxImagePixels = 1_000_000 });
        var corrupt = await Assert.ThrowsAsync<ImageDecodeException>(() => engine.EncodeAsync([1, 2, 3, 4, 5], "s", Ct));
        Assert.Equal(ImageErrorReason.UnsupportedFormat, corrupt.Reason);
        var bomb = await Assert.ThrowsAsync<ImageDecodeException>(() => engine.EncodeAsync(Png(2000, 1000), "s", Ct));
        Assert.Equal(ImageErrorReason.TooManyPixels, bomb.Reason);
        await Assert.ThrowsAsync<ImageDecodeException>(() => engine.EncodeAsync([1, 2, 3, 4, 5], "s", Ct));
        Assert.Equal(0, engine.GetLoad().CacheEntries);
        Assert.Equal(VisionCacheOutcome.Miss, (await engine.EncodeAsync(TestModels.SyntheticPng, "s", Ct)).Outcome);
    }

    [Fact(Timeout = 60_000)]
    public async Task Pending_images_beyond_the_limit_are_rejected_as_overloaded()
    {
        using var engine = new VisionEngine(TestModels.TinyPipeline.Model, new VisionEngineOptions { MaxPendingImages = 2, MaxBatchWaitMilliseconds = 300, PreprocessWorkers = 1 });
        var a = engine.EncodeAsync(Png(300, 300), "s", Ct);
        var b = engine.EncodeAsync(Png(310, 300), "s", Ct);
        var e = Assert.Throws<EngineRejectedException>(() => { _ = engine.EncodeAsync(Png(320, 300), "s", Ct); });
        Assert.Equal(RejectionReason.Overloaded, e.Reason);
        await Task.WhenAll(a, b);
        Assert.Equal(VisionCacheOutcome.Miss, (await engine.EncodeAsync(Png(320, 300), "s", Ct)).Outcome);
    }

    private static byte[] Png(int width, int height)
    {
        using var bitmap = new SkiaSharp.SKBitmap(width, height);
        using (var canvas = new SkiaSharp.SKCanvas(bitmap))
        {
            canvas.Clear(new SkiaSharp.SKColor((byte)(width % 255), 120, (byte)(height % 255)));
            using var paint = new SkiaSharp.SKPaint { Color = SkiaSharp.SKColors.Red };
            canvas.DrawCircle(width / 3f, height / 2f, Math.Min(width, height) / 5f, paint);
        }
        using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
