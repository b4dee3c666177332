using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TorchSharp;
using XGenMM.Cluster.Placement;
using XGenMM.Engine.Decoding;
using XGenMM.Engine.Vision;
using XGenMM.Model;
using XGenMM.Model.Kernels;
using XGenMM.Model.Runtime;

namespace XGenMM.Cluster.Hosting;

/// <summary>
/// The engines of this silo: one model per device, a vision engine (vision role) on the first device and one decode
/// engine per device (decoder role). Loaded once at startup, shared by the grains of this silo.
/// </summary>
public sealed partial class EngineHost(IOptions<SiloSettings> silo, IOptions<ModelSettings> model, IOptions<DecodeEngineOptions> decode,
    IOptions<VisionEngineOptions> vision, ILoggerFactory loggers) : IDisposable
{
    private readonly ILogger _logger = loggers.CreateLogger<EngineHost>();
    private readonly List<XGenMMPipeline> _pipelines = [];
    private readonly Dictionary<string, DecodeEngine> _decoders = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private VisionEngine? _vision;

    /// <summary>How long a grain call that needs an engine waits for a silo that is still loading its model.</summary>
    public static readonly TimeSpan LoadWait = TimeSpan.FromSeconds(60);

    public IReadOnlySet<string> Roles { get; } = SiloRoles.Parse(silo.Value.Roles);
    public IReadOnlyList<string> Devices { get; } = silo.Value.Devices();
    public IReadOnlyDictionary<string, DecodeEngine> Decoders => _decoders;
    public bool Loaded { get; private set; }

    private long _visionGrainHits;

    /// <summary>Encodes answered by a vision grain that already held the tokens: the engine never sees these repeats,
    /// yet they are cache hits for xgenmm_mm_cache_*.</summary>
    public long VisionGrainHits => Interlocked.Read(ref _visionGrainHits);

    public void RecordVisionGrainHit() => Interlocked.Increment(ref _visionGrainHits);
    public string ModelDirectory { get; private set; } = "";

    /// <summary>The checkpoint names of every parameter this silo holds, over all devices (what its roles loaded).</summary>
    public IReadOnlyList<string> LoadedParameterNames => _pipelines.SelectMany(p => p.Model.named_parameters().Select(n => n.name)).ToList();

    public VisionEngine Vision => _vision ?? throw new InvalidOperationException(Roles.Contains(SiloRoles.Vision)
        ? "The vision engine is still loading." : "This silo has no vision role.");

    /// <summary>The vision engine once it is loaded: a silo joins the cluster while its model still loads, and the
    /// first images routed to it wait here instead of failing.</summary>
    public async Task<VisionEngine> GetVisionAsync(CancellationToken cancellationToken = default)
    {
        if (_vision is null && Roles.Contains(SiloRoles.Vision))
            await _loaded.Task.WaitAsync(LoadWait, cancellationToken).ConfigureAwait(false);
        return Vision;
    }

    public bool TryGetVision(out VisionEngine vision)
    {
        vision = _vision!;
        return _vision is not null;
    }

    public DecodeEngine GetDecoder(string device) => _decoders.TryGetValue(device, out var engine)
        ? engine : throw new InvalidOperationException($"This silo has no decode engine for device '{device}'.");

    /// <summary>Loads the model on every device and starts the engines.</summary>
    public void Load()
    {
        if (Loaded) return;
        try
        {
            LoadEngines();
            _loaded.TrySetResult();
        }
        catch (Exception e)
        {
            _loaded.TrySetException(e);
            throw;
        }
    }

    private void LoadEngines()
    {
        TorchRuntime.EnsureLoaded();
        ModelDirectory = DefaultModel.Resolve(model.Value.Path);
        var dtype = model.Value.DType.ToLowerInvariant() switch
        {
            "float32" or "fp32" => torch.ScalarType.Float32,
            "float16" or "fp16" => torch.ScalarType.Float16,
            "bfloat16" or "bf16" => torch.ScalarType.BFloat16,
            var other => throw new InvalidOperationException($"Model:DType '{other}' is not one of float32, float16, bfloat16."),
        };
        WeightFormat? cpuWeights;
        try
        {
            cpuWeights = model.Value.WeightFormat.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)
                ? (dtype == torch.ScalarType.BFloat16 ? WeightFormat.BF16 : WeightFormat.F32)
                : WeightFormats.Parse(model.Value.WeightFormat);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"Model:WeightFormat: {e.Message} (or auto)", e);
        }
        // Each device loads only what its roles run: the vision engine lives on the first device, decoders on every
        // device; a vision-only silo never builds the language model and a decoder-only silo never builds SigLIP.
        bool hasVision = Roles.Contains(SiloRoles.Vision), decoder = Roles.Contains(SiloRoles.Decoder);
        for (int d = 0; d < Devices.Count; d++)
        {
            var parts = (hasVision && d == 0 ? ModelParts.Vision : 0) | (decoder ? ModelParts.Language : 0);
            if (parts == 0) continue;
            var pipeline = XGenMMPipeline.Load(ModelDirectory, new torch.Device(Devices[d]), dtype, parts: parts);
            _pipelines.Add(pipeline);
            if (decoder && cpuWeights is { } format && pipeline.Model.Device.type == DeviceType.CPU)
            {
                // The CPU kernels split every product over all cores and hold the weights once, packed; the torch
                // copy is freed. On a CPU without AVX2+FMA nothing is packed and libtorch serves as before.
                var packed = pipeline.Model.PackDecoder(format);
                if (packed.Layers > 0) LogPacked(Devices[d], format, packed.Layers, packed.Bytes / (1024.0 * 1024.0));
                else LogNotPacked(Devices[d], format);
            }
            if (decoder)
            {
                var options = decode.Value.Copy();
                options.Name = Devices[d];
                _decoders[Devices[d]] = new DecodeEngine(pipeline.Model, pipeline.Tokenizer, options, loggers.CreateLogger<DecodeEngine>());
            }
        }
        if (hasVision)
            _vision = new VisionEngine(_pipelines[0].Model, vision.Value, loggers.CreateLogger<VisionEngine>());
        Loaded = true;
        string roles = string.Join(',', Roles), devices = string.Join(',', Devices);
        LogLoaded(ModelDirectory, roles, devices);
    }

    public void Dispose()
    {
        _vision?.Dispose();
        foreach (var d in _decoders.Values) d.Dispose();
        foreach (var p in _pipelines) p.Dispose();
    }

    [LoggerMessage(EventId = 302, Level = LogLevel.Information, Message = "Decoder on {Device}: {Layers} linear layers and the head run on the CPU kernels in {Format} ({Megabytes:F1} MiB)")]
    private partial void LogPacked(string device, WeightFormat format, int layers, double megabytes);

    [LoggerMessage(EventId = 303, Level = LogLevel.Warning, Message = "Decoder on {Device}: weight format {Format} asked for, but this CPU lacks AVX2+FMA; libtorch's mat-mul serves in the model's dtype")]
    private partial void LogNotPacked(string device, WeightFormat format);

    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "Engines loaded from {Model}: roles {Roles}, devices {Devices}")]
    private partial void LogLoaded(string model, string roles, string devices);
}
