namespace XGenMM.Engine.Vision;

/// <summary>Batching, preprocessing and cache limits of a vision engine. Bound from <c>Engine:Vision</c>.</summary>
public sealed class VisionEngineOptions
{
    /// <summary>Images encoded together in one vision-tower pass.</summary>
    public int MaxBatchImages { get; set; } = 8;
    /// <summary>How long the first image of a batch waits for company.</summary>
    public int MaxBatchWaitMilliseconds { get; set; } = 5;
    /// <summary>Threads that decode and preprocess images off the encoder thread.</summary>
    public int PreprocessWorkers { get; set; } = Math.Max(1, Environment.ProcessorCount / 2);
    /// <summary>Images accepted but not yet encoded beyond which new ones are rejected as overloaded.</summary>
    public int MaxPendingImages { get; set; } = 256;
    /// <summary>Bytes of encoded vision tokens kept (LRU).</summary>
    public long CacheBytes { get; set; } = 256L * 1024 * 1024;
    /// <summary>Element type of the transferable tokens.</summary>
    public VisionTokenFormat WireFormat { get; set; } = VisionTokenFormat.Float16;
    /// <summary>Largest accepted file, in bytes.</summary>
    public long MaxImageBytes { get; set; } = 20L * 1024 * 1024;
    /// <summary>Largest accepted decoded image, in pixels (guards against decompression bombs).</summary>
    public long MaxImagePixels { get; set; } = 40_000_000;
    /// <summary>Rotate/flip images by their EXIF orientation tag before preprocessing. Off by default: the original
    /// implementation (PIL without <c>ImageOps.exif_transpose</c>) feeds the stored pixels to the model.</summary>
    public bool ApplyExifOrientation { get; set; }
    public string Name { get; set; } = "vision";

    public void Validate()
    {
        if (MaxBatchImages < 1) throw new ArgumentOutOfRangeException(nameof(MaxBatchImages), MaxBatchImages, "must be at least 1.");
        if (MaxBatchWaitMilliseconds < 0) throw new ArgumentOutOfRangeException(nameof(MaxBatchWaitMilliseconds), MaxBatchWaitMilliseconds, "must not be negative.");
        if (PreprocessWorkers < 1) throw new ArgumentOutOfRangeException(nameof(PreprocessWorkers), PreprocessWorkers, "must be at least 1.");
        if (MaxPendingImages < 1) throw new ArgumentOutOfRangeException(nameof(MaxPendingImages), MaxPendingImages, "must be at least 1.");
        if (CacheBytes < 0) throw new ArgumentOutOfRangeException(nameof(CacheBytes), CacheBytes, "must not be negative.");
        if (MaxImageBytes < 1) throw new ArgumentOutOfRangeException(nameof(MaxImageBytes), MaxImageBytes, "must be positive.");
        if (MaxImagePixels < 1) throw new ArgumentOutOfRangeException(nameof(MaxImagePixels), MaxImagePixels, "must be positive.");
    }
}
