using System.ComponentModel.DataAnnotations;

namespace XGenMM.Cluster.Hosting;

/// <summary>What this silo does. Bound from <c>Silo</c> (see docs/configuration.md).</summary>
public sealed class SiloSettings
{
    /// <summary>Comma list of <c>vision</c>, <c>decoder</c>.</summary>
    [Required] public string Roles { get; set; } = "vision,decoder";
    /// <summary>CUDA device ordinals, e.g. "0,1"; empty = one CPU device.</summary>
    public string Gpus { get; set; } = "";
    [Range(0, 3600)] public int DrainTimeoutSeconds { get; set; } = 60;
    [Range(1, 65535)] public int HttpPort { get; set; } = 8080;
    /// <summary>The address of <see cref="HttpPort"/>: loopback unless configured (a silo on a shared machine exposes
    /// nothing); containers and the chart set 0.0.0.0 so that the kubelet and Prometheus reach the pod IP.</summary>
    public string HttpAddress { get; set; } = "127.0.0.1";
    /// <summary>Deadline of a decoder's pull of an image's tokens from its vision grain (a local cache read or one
    /// transfer between silos): past it the gateway is told to encode the image again rather than wait on a vision silo
    /// that may be dead (membership breaks such calls only once it has declared the silo dead).</summary>
    [Range(0.1, 600)] public double VisionPullTimeoutSeconds { get; set; } = 10;

    public IReadOnlyList<string> Devices() =>
        string.IsNullOrWhiteSpace(Gpus)
            ? ["cpu"]
            : Gpus.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(g => $"cuda:{int.Parse(g, System.Globalization.CultureInfo.InvariantCulture)}").ToArray();
}

/// <summary>Which checkpoint to serve. Bound from <c>Model</c>.</summary>
public sealed class ModelSettings
{
    /// <summary>Hugging Face layout directory; empty = the embedded xgenmm-nano.</summary>
    public string? Path { get; set; }
    /// <summary>float32, float16 or bfloat16 (half types for GPUs).</summary>
    public string DType { get; set; } = "float32";
    /// <summary>How a CPU decoder holds its linear layers and head: <c>auto</c> (bf16 for a bfloat16 model, f32
    /// otherwise), <c>f32</c>, <c>bf16</c>, <c>int8</c> (our AVX2 kernels, weights packed once at load) or <c>torch</c>
    /// (libtorch's mat-mul over the loaded tensors). GPU devices always keep the torch path.</summary>
    public string WeightFormat { get; set; } = "auto";
}
