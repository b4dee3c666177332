using System.ComponentModel.DataAnnotations;

namespace XGenMM.Gateway.Hosting;

public enum GatewayMode
{
    /// <summary>Single process: XGenMM.AppHost co-hosts a silo with both roles on localhost clustering.</summary>
    Local,
    /// <summary>Pure gateway: an Orleans client of remote silos (Cluster:* names the membership).</summary>
    Cluster,
}

/// <summary>Bound from <c>Gateway</c>.</summary>
public sealed class GatewayOptions
{
    /// <summary>Set by the host (XGenMM.Gateway: Cluster, XGenMM.AppHost: Local); a configured value must agree with it.</summary>
    public GatewayMode? Mode { get; set; }

    /// <summary>The model id of the API (<c>/v1/models</c>, the <c>model</c> field); empty = the model directory's name.</summary>
    public string ModelId { get; set; } = "";

    /// <summary>One line on what the served model is and knows (the chat page shows it); empty = the first paragraph of the
    /// model directory's README.md.</summary>
    public string ModelCard { get; set; } = "";

    /// <summary>In Local mode without configured tenants, the API key of the development tenant; empty = a new random key per run.</summary>
    public string DevelopmentApiKey { get; set; } = "";
}

/// <summary>Request limits, bound from <c>Gateway:Limits</c>. Each has a test that sends one past it.</summary>
public sealed class RequestLimits
{
    /// <summary>Largest HTTP request body and SignalR message (base64 images included).</summary>
    [Range(1024, 1L << 30)] public long MaxBodyBytes { get; set; } = 24L * 1024 * 1024;
    [Range(1, 64)] public int MaxImagesPerRequest { get; set; } = 8;
    /// <summary>Largest encoded image.</summary>
    [Range(1, 1L << 30)] public long MaxImageBytes { get; set; } = 10L * 1024 * 1024;
    /// <summary>Largest width*height, read from the header before decoding (decompression bombs).</summary>
    [Range(1, 1L << 32)] public long MaxImagePixels { get; set; } = 25_000_000;
    [Range(1, 65535)] public int MaxImageSide { get; set; } = 8192;
    /// <summary>Largest prompt in text tokens (image tokens come on top and are checked against the context by the decoder).</summary>
    [Range(1, 1_000_000)] public int MaxPromptTokens { get; set; } = 3072;
    /// <summary>Upper bound of max_tokens / max_completion_tokens.</summary>
    [Range(1, 1_000_000)] public int MaxCompletionTokens { get; set; } = 1024;
    /// <summary>max_tokens when the request names none.</summary>
    [Range(1, 1_000_000)] public int DefaultMaxTokens { get; set; } = 256;
    [Range(1, 10_000)] public int MaxMessages { get; set; } = 64;
    /// <summary>Largest <c>n</c> (choices per request): each choice is a generation of its own on the decoders.</summary>
    [Range(1, 64)] public int MaxChoices { get; set; } = 4;
    [Range(0, 16)] public int MaxStopSequences { get; set; } = 4;
    [Range(1, 1024)] public int MaxStopSequenceChars { get; set; } = 64;
    /// <summary>Concurrent streams of one SignalR connection.</summary>
    [Range(1, 1024)] public int MaxStreamsPerConnection { get; set; } = 4;
    /// <summary>SignalR connections one tenant may hold open on this gateway (each costs memory and a socket even
    /// while idle); the next one is closed at its start with "429 too_many_connections".</summary>
    [Range(1, 1_000_000)] public int MaxConnectionsPerTenant { get; set; } = 256;
    /// <summary>Time a client has to send a request's headers (Kestrel's RequestHeadersTimeout): a client that dribbles
    /// them (slowloris) is cut off instead of holding a connection.</summary>
    [Range(1, 300)] public int RequestHeadersTimeoutSeconds { get; set; } = 10;

    /// <summary>The one check of <see cref="MaxImagesPerRequest"/>: each door (HTTP parser, hub) asks it for every image
    /// as it reads the request, before any image is decoded or fetched. (A tenant's own, lower limit is the tenant
    /// grain's.)</summary>
    internal OpenAi.OpenAiException? RefuseImage(int imagesSoFar, string param) => imagesSoFar >= MaxImagesPerRequest
        ? OpenAi.OpenAiException.Invalid($"The request has more than {MaxImagesPerRequest} images; that is the limit per request.", param, "too_many_images")
        : null;
}

/// <summary>Remote <c>http(s)</c> image URLs, bound from <c>Gateway:RemoteImages</c>. Off unless enabled.</summary>
public sealed class RemoteImageOptions
{
    public bool Enabled { get; set; }
    [Range(1, 1L << 30)] public long MaxBytes { get; set; } = 10L * 1024 * 1024;
    [Range(0.1, 300)] public double TimeoutSeconds { get; set; } = 10;
    [Range(0, 10)] public int MaxRedirects { get; set; } = 3;
    /// <summary>Only for tests that serve images from loopback: lets loopback through the address guard (never in production).</summary>
    public bool AllowLoopback { get; set; }
}
