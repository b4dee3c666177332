using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using XGenMM.Engine.Decoding;
using XGenMM.Model;
using XGenMM.Model.Imaging;
using static TorchSharp.torch;

namespace XGenMM.Engine.Vision;

/// <summary>How an encode request was served.</summary>
public enum VisionCacheOutcome
{
    /// <summary>Encoded for this request.</summary>
    Miss,
    /// <summary>Served from the token cache.</summary>
    Hit,
    /// <summary>Joined an encode of the same image already in flight.</summary>
    Coalesced,
}

/// <summary>An encoded image and how it was obtained.</summary>
public sealed record VisionEncoding(VisionTokens Tokens, VisionCacheOutcome Outcome);

/// <summary>A snapshot of the vision engine's counters.</summary>
public sealed record VisionLoad(string Name, int PendingImages, long Hits, long Misses, long Coalesced, long ImagesEncoded, long Batches,
    long CacheBytes, int CacheEntries);

/// <summary>
/// Turns image files into resampled vision tokens. Decoding and anyres preprocessing run on a bounded pool of
/// workers; a dedicated encoder thread gathers preprocessed images into batches (up to
/// <see cref="VisionEngineOptions.MaxBatchImages"/>, waiting at most <see cref="VisionEngineOptions.MaxBatchWaitMilliseconds"/>)
/// and runs the vision tower and resampler. Results are cached by content key (<see cref="ImageContentKey"/>: tenant
/// scope, model fingerprint, bytes); concurrent requests for the same image share one encode.
/// </summary>
public sealed partial class VisionEngine : IDisposable
{
    private sealed record Work(string Key, byte[] Bytes, TaskCompletionSource<VisionTokens> Result)
    {
        public PreprocessedImage? Image { get; set; }
    }

    private readonly XGenMMModel _model;
    private readonly AnyResPreprocessor _preprocessor;
    private readonly VisionEngineOptions _options;
    private readonly ImageLimits _limits;
    private readonly ILogger _logger;
    private readonly string _fingerprint;
    private readonly object _gate = new();
    private readonly VisionTokenCache _cache;
    private readonly Dictionary<string, Task<VisionTokens>> _inFlight = new(StringComparer.Ordinal);
    private readonly Channel<Work> _toPreprocess = Channel.CreateUnbounded<Work>();
    private readonly Channel<Work> _toEncode = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task[] _workers;
    private readonly Thread _encoder;
    private readonly CancellationTokenSource _stop = new();
    private int _pending;
    private long _hits, _misses, _coalesced, _encoded, _batches;

    public VisionEngine(XGenMMModel model, VisionEngineOptions options, ILogger<VisionEngine>? logger = null)
    {
        options.Validate();
        _model = model;
        _options = options;
        _preprocessor = new AnyResPreprocessor(model.Config.Preprocessor);
        _limits = new ImageLimits { MaxBytes = options.MaxImageBytes, MaxPixels = options.MaxImagePixels };
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _cache = new VisionTokenCache(options.CacheBytes);
        _fingerprint = ImageContentKey.ModelFingerprint(model.Config);
        _workers = Enumerable.Range(0, options.PreprocessWorkers).Select(_ => Task.Run(PreprocessLoop)).ToArray();
        _encoder = new Thread(EncodeLoop) { IsBackground = true, Name = $"vision-{options.Name}" };
        _encoder.Start();
    }

    public string Name => _options.Name;

    /// <summary>The content key of an image for a tenant scope (<see cref="ImageContentKey"/>), for in-process callers;
    /// the cluster's gateway computes the same key once per request and passes it to <see cref="EncodeByKeyAsync"/>.</summary>
    public string ContentKey(ReadOnlySpan<byte> image, string scope) => ImageContentKey.Compute(image, scope, _fingerprint);

    /// <summary>Encodes one image of a tenant scope: <see cref="EncodeByKeyAsync"/> under its <see cref="ContentKey"/>.</summary>
    public Task<VisionEncoding> EncodeAsync(byte[] image, string scope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        return EncodeByKeyAsync(ContentKey(image, scope), image, cancellationToken);
    }

    /// <summary>Encodes one image (or serves it from the cache). Throws <see cref="ImageDecodeException"/> for a
    /// file that is not a usable image and <see cref="EngineRejectedException"/> when too many images are pending.</summary>
    /// <remarks>The key is trusted as the image's identity (it is never recomputed here): only the gateway, which
    /// computed it from these bytes, and in-process callers name it.</remarks>
    public Task<VisionEncoding> EncodeByKeyAsync(string key, byte[] image, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (image.LongLength > _options.MaxImageBytes)
            throw new ImageDecodeException(ImageErrorReason.TooLarge, $"The image has {image.LongLength} bytes; the limit is {_options.MaxImageBytes}.");
        Task<VisionTokens> shared;
        VisionCacheOutcome outcome;
        lock (_gate)
        {
            if (_cache.TryGet(key, out var cached))
            {
                _hits++;
                return Task.FromResult(new VisionEncoding(cached, VisionCacheOutcome.Hit));
            }
            if (_inFlight.TryGetValue(key, out var running))
            {
                _coalesced++;
                shared = running;
                outcome = VisionCacheOutcome.Coalesced;
            }
            else
            {
                if (_stop.IsCancellationRequested) throw new EngineRejectedException(RejectionReason.ShuttingDown, $"Vision engine '{Name}' is stopped.");
                if (_pending >= _options.MaxPendingImages)
                    throw new EngineRejectedException(RejectionReason.Overloaded, $"Vision engine '{Name}' has {_pending} images pending (limit {_options.MaxPendingImages}).");
                _misses++;
                _pending++;
                var work = new Work(key, image, new TaskCompletionSource<VisionTokens>(TaskCreationOptions.RunContinuationsAsynchronously));
                shared = work.Result.Task;
                _inFlight[key] = shared;
                outcome = VisionCacheOutcome.Miss;
                _toPreprocess.Writer.TryWrite(work);
            }
        }
        return Wrap(shared, outcome, cancellationToken);
    }

    private static async Task<VisionEncoding> Wrap(Task<VisionTokens> shared, VisionCacheOutcome outcome, CancellationToken cancellationToken) =>
        new(await shared.WaitAsync(cancellationToken).ConfigureAwait(false), outcome);

    /// <summary>The cached tokens for a content key, if still in the cache (counts as a hit).</summary>
    public bool TryGetCached(string contentKey, out VisionTokens tokens)
    {
        lock (_gate)
        {
            if (!_cache.TryGet(contentKey, out tokens)) return false;
            _hits++;
            return true;
        }
    }

    public VisionLoad GetLoad()
    {
        lock (_gate)
            return new VisionLoad(Name, _pending, _hits, _misses, _coalesced, Interlocked.Read(ref _encoded), Interlocked.Read(ref _batches), _cache.Bytes, _cache.Count);
    }

    private async Task PreprocessLoop()
    {
        var reader = _toPreprocess.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token).ConfigureAwait(false))
            {
                while (reader.TryRead(out var work))
                {
                    try
                    {
                        work.Image = _preprocessor.Process(ImageDecoder.Decode(work.Bytes, _limits, _options.ApplyExifOrientation));
                        _toEncode.Writer.TryWrite(work);
                    }
#pragma warning disable CA1031 // every failure belongs to the request that sent the file
                    catch (Exception e)
#pragma warning restore CA1031
                    {
                        Fail(work, e);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    private void EncodeLoop()
    {
        var reader = _toEncode.Reader;
        var batch = new List<Work>();
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (!reader.WaitToReadAsync(_stop.Token).AsTask().GetAwaiter().GetResult()) break;
            }
            catch (OperationCanceledException)
            {
                break;
            }
            batch.Clear();
            var deadline = Stopwatch.GetTimestamp() + (long)(_options.MaxBatchWaitMilliseconds * Stopwatch.Frequency / 1000.0);
            while (batch.Count < _options.MaxBatchImages)
            {
                if (reader.TryRead(out var work)) { batch.Add(work); continue; }
                if (batch.Count > 0 && Stopwatch.GetTimestamp() >= deadline) break;
                // More images may be preprocessing right now: wait briefly for them to join this batch.
                if (!SpinWait(reader, deadline)) break;
            }
            if (batch.Count > 0) EncodeBatch(batch);
        }
    }

    private static bool SpinWait(ChannelReader<Work> reader, long deadline)
    {
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (reader.TryPeek(out _)) return true;
            Thread.Sleep(1);
        }
        return reader.TryPeek(out _);
    }

    private void EncodeBatch(List<Work> batch)
    {
        int tokensPerSide = _model.Config.Vision.PatchesPerSide;
        var results = new List<VisionTokens>(batch.Count);
        try
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var pixels = torch.cat(batch.Select(w => w.Image!.ToTensor()).ToList(), 0);          // [ΣV, 3, S, S]
            var features = _model.EncodeVision(pixels);                                             // [ΣV, P, C]
            int offset = 0;
            foreach (var work in batch)
            {
                var image = work.Image!;
                var layout = AnyResLayout.Create(image.GridCols, image.GridRows, image.OriginalSize, tokensPerSide);
                var index = torch.tensor(layout.GroupTokenIndex, [layout.Views, layout.TokensPerView]);
                Tensor? mask = _model.Config.AnyRes ? torch.tensor(layout.KeyMask, [layout.Views, layout.TokensPerView]).to_type(ScalarType.Bool) : null;
                var tokens = _model.ResampleImage(features.narrow(0, offset, image.Views), index, mask);    // [n, D]
                results.Add(VisionTokens.FromTensor(tokens, _options.WireFormat, work.Key));
                offset += image.Views;
            }
        }
#pragma warning disable CA1031 // a failed batch fails its requests, not the engine
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogBatchFailed(e, Name, batch.Count);
            foreach (var work in batch) Fail(work, e);
            return;
        }
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _encoded, batch.Count);
        for (int i = 0; i < batch.Count; i++)
        {
            var work = batch[i];
            lock (_gate)
            {
                _cache.Add(results[i]);
                _inFlight.Remove(work.Key);
                _pending--;
            }
            work.Image = null;
            work.Result.TrySetResult(results[i]);
        }
    }

    private void Fail(Work work, Exception e)
    {
        lock (_gate)
        {
            _inFlight.Remove(work.Key);
            _pending--;
        }
        work.Result.TrySetException(e);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _toPreprocess.Writer.TryComplete();
        _toEncode.Writer.TryComplete();
        _encoder.Join();
        Task.WaitAll(_workers);
        while (_toPreprocess.Reader.TryRead(out var w)) Fail(w, new EngineRejectedException(RejectionReason.ShuttingDown, $"Vision engine '{Name}' stopped."));
        while (_toEncode.Reader.TryRead(out var w)) Fail(w, new EngineRejectedException(RejectionReason.ShuttingDown, $"Vision engine '{Name}' stopped."));
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 101, Level = LogLevel.Error, Message = "Vision engine {Name} failed a batch of {Count} images")]
    private partial void LogBatchFailed(Exception exception, string name, int count);
}
