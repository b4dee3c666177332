using XGenMM.LoadTest.Clients;

namespace XGenMM.LoadTest.Cli;

public enum LoadMode
{
    /// <summary>Fixed concurrency: each of N users sends its next request when its last one ends.</summary>
    Closed,
    /// <summary>Requests arrive on a schedule (Poisson, or gamma with a burstiness factor) whatever the server does.</summary>
    Open,
    /// <summary>Open loop at rising rates until throughput stops rising or an SLO is missed: the knee.</summary>
    Sweep,
}

public enum ImageReuse
{
    /// <summary>Every request draws new images: each one a vision-cache miss.</summary>
    Unique,
    /// <summary>Requests draw from a small fixed pool: after the first use each image is a cache hit.</summary>
    Repeated,
}

/// <summary>Latency objectives for goodput (vLLM's --goodput ttft:/tpot:/e2el:); null = not checked.</summary>
public sealed record Slo(double? TtftMs, double? TpotMs, double? E2eMs)
{
    public bool Any => TtftMs is not null || TpotMs is not null || E2eMs is not null;

    public bool Met(RequestRecord r) => r.Success
        && (TtftMs is not double t || r.Ttft * 1000 <= t)
        && (TpotMs is not double p || (r.Tpot ?? 0) * 1000 <= p)
        && (E2eMs is not double e || r.E2e * 1000 <= e);

    public override string ToString() => string.Join(", ", new[]
    {
        TtftMs is double t ? $"TTFT <= {t:0.#} ms" : null,
        TpotMs is double p ? $"TPOT <= {p:0.#} ms" : null,
        E2eMs is double e ? $"E2E <= {e:0.#} ms" : null,
    }.Where(s => s is not null));
}

/// <summary>Everything one experiment (a series of load points over one workload) needs; the command line fills it.</summary>
public sealed class ExperimentSettings
{
    public string Name { get; set; } = "run";
    public Uri Url { get; set; } = new("http://127.0.0.1:5099/");
    /// <summary>"http" (OpenAI SSE) or "signalr".</summary>
    public string Protocol { get; set; } = "http";
    public bool MessagePack { get; set; }
    /// <summary>Served model id; null = the first of /v1/models.</summary>
    public string? Model { get; set; }
    public List<TenantSpec> Tenants { get; } = [];

    public LoadMode Mode { get; set; } = LoadMode.Closed;
    public List<int> Concurrency { get; } = [];
    public List<double> Rates { get; } = [];
    /// <summary>Gamma shape of the inter-arrival times: 1 = Poisson, below 1 burstier, above 1 more regular.</summary>
    public double Burstiness { get; set; } = 1;
    /// <summary>Open loop: most requests in flight at once (vLLM --max-concurrency); null = unbounded.</summary>
    public int? MaxConcurrency { get; set; }
    public double SweepStart { get; set; } = 1;
    public double SweepFactor { get; set; } = 2;
    public int SweepSteps { get; set; } = 6;
    /// <summary>The sweep stops when output tok/s rises by less than this fraction from one rate to the next.</summary>
    public double SweepMinGain { get; set; } = 0.1;
    /// <summary>Open loops: a point whose served rate falls below this fraction of the offered rate is saturated (past the knee).</summary>
    public double SweepMinServed { get; set; } = 0.85;

    /// <summary>Requests per load point (warm-up excluded).</summary>
    public int Requests { get; set; } = 40;
    /// <summary>Most seconds a point issues requests; what is in flight then may finish (within the drain timeout).</summary>
    public double DurationSeconds { get; set; } = 120;
    public int Warmup { get; set; } = 2;
    public double RequestTimeoutSeconds { get; set; } = 120;
    public double DrainTimeoutSeconds { get; set; } = 60;
    /// <summary>Closed loop: seconds a user waits after a 429 or 503 before its next request (0 = none).</summary>
    public double RefusalPauseSeconds { get; set; }
    /// <summary>Closed loop: a refused user waits the refusal's Retry-After (falling back to <see cref="RefusalPauseSeconds"/>).</summary>
    public bool HonorRetryAfter { get; set; }

    public int InputWords { get; set; } = 32;
    public double InputRange { get; set; }
    public int OutputTokens { get; set; } = 32;
    public bool IgnoreEos { get; set; } = true;
    public float Temperature { get; set; }
    public int ImagesPerRequest { get; set; }
    public ImageReuse ImageReuse { get; set; } = ImageReuse.Unique;
    /// <summary>Distinct images of the repeated pool (one per size by default).</summary>
    public int ImagePool { get; set; }
    public List<(int Width, int Height)> ImageSizes { get; } = [];
    /// <summary>Turns per conversation; later turns resend the history with the answers received.</summary>
    public int Turns { get; set; } = 1;
    public int Seed { get; set; } = 1;

    public Slo Slo { get; set; } = new(null, null, null);
    /// <summary>Fraction of requests that must meet the SLOs for a sweep point to count as within them.</summary>
    public double SloTarget { get; set; } = 0.9;

    public bool ScrapeServer { get; set; } = true;
    /// <summary>Free text for the report (e.g. which model the server ran).</summary>
    public string? Note { get; set; }

    public IReadOnlyList<(int Width, int Height)> EffectiveImageSizes =>
        ImageSizes.Count > 0 ? ImageSizes : Workload.ImageFactory.AnyResSizes;

    public void Validate()
    {
        if (Tenants.Count == 0) throw new ArgumentException("No tenant: give --api-key KEY or --tenant LABEL:KEY[:SHARE].");
        if (Tenants.Sum(t => t.Share) <= 0) throw new ArgumentException("The tenants' shares add up to zero.");
        if (Protocol is not ("http" or "signalr")) throw new ArgumentException($"--protocol must be http or signalr, not '{Protocol}'.");
        if (Mode == LoadMode.Closed && Concurrency.Any(c => c < 1)) throw new ArgumentException("--concurrency values must be at least 1.");
        if (Mode == LoadMode.Open && Rates.Any(r => !(r > 0))) throw new ArgumentException("--rate values must be positive.");
        if (!(Burstiness > 0)) throw new ArgumentException("--burstiness must be positive.");
        if (Requests < 1) throw new ArgumentException("--requests must be at least 1.");
        if (!(DurationSeconds > 0)) throw new ArgumentException("--duration must be positive.");
        if (OutputTokens < 1) throw new ArgumentException("--output-tokens must be at least 1.");
        if (InputWords < 1) throw new ArgumentException("--input-words must be at least 1.");
        if (InputRange is < 0 or >= 1) throw new ArgumentException("--input-range must be in [0, 1).");
        if (ImagesPerRequest < 0) throw new ArgumentException("--images must not be negative.");
        if (Turns < 1) throw new ArgumentException("--turns must be at least 1.");
        if (SweepFactor <= 1 || SweepStart <= 0 || SweepSteps < 1) throw new ArgumentException("--sweep-start > 0, --sweep-factor > 1, --sweep-steps >= 1.");
        if (SweepMinServed is < 0 or > 1) throw new ArgumentException("--sweep-min-served must be in [0, 1].");
        if (SloTarget is <= 0 or > 1) throw new ArgumentException("--slo-target must be in (0, 1].");
    }
}
