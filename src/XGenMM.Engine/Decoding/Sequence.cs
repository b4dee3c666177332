using System.Diagnostics;
using System.Threading.Channels;
using XGenMM.Model.Generation;
using XGenMM.Model.Tokenization;

namespace XGenMM.Engine.Decoding;

/// <summary>A request inside the engine, from submission to its final event. Touched only by the engine thread,
/// except <see cref="Cancelled"/> and the channel's reader. Holds no tensors, so that the scheduler can be run and
/// tested on token counts alone; the model runner keeps the prompt embeddings.</summary>
internal sealed class Sequence(DecodeRequest request, int promptTextTokens, int imageTokens, long[] contentIds, long arrival)
{
    public enum Phase { Waiting, Prefilling, Running, Done }

    public DecodeRequest Request { get; } = request;
    public Channel<DecodeEvent> Events { get; } = Channel.CreateUnbounded<DecodeEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    public CancellationTokenRegistration Registration { get; set; }
    public volatile bool Cancelled;

    /// <summary>Content id of every prompt position (resumed tokens included): the prefix-reuse key.</summary>
    public long[] ContentIds { get; } = contentIds;
    public int PromptPositions => ContentIds.Length;
    public int PromptTextTokens { get; } = promptTextTokens;
    public int ImageTokens { get; } = imageTokens;

    public Phase State { get; set; } = Phase.Waiting;
    public int Slot { get; set; } = -1;
    /// <summary>Positions whose KV is in the slot once the current step has run (the scheduler advances it when it
    /// plans a prefill chunk or a decode row).</summary>
    public int Length { get; set; }
    public int ReusedTokens { get; set; }
    /// <summary>Order of admission: prefill chunks go to the earliest admitted sequence first.</summary>
    public long AdmissionOrder { get; set; }
    /// <summary>The last sampled token, fed at the next decode step.</summary>
    public int PendingToken { get; set; } = -1;
    /// <summary>Tokens of the completion so far (resumed ones included).</summary>
    public List<int> Completion { get; } = [];

    public TokenSampler? Sampler { get; set; }
    public IncrementalDecoder? Decoder { get; set; }
    public StopStringMatcher? Stops { get; set; }

    public long ArrivalTimestamp { get; } = arrival;
    public long AdmittedTimestamp { get; set; }
    public long FirstTokenTimestamp { get; set; }
    public long LastTokenTimestamp { get; set; }
    public long PrefillStartTimestamp { get; set; }
    public long PrefillEndTimestamp { get; set; }
    public long ItlPrevious { get; set; }
    /// <summary>Seconds between consecutive tokens (the first entry, for the first token, is 0).</summary>
    public List<double> ItlSamples { get; } = [];

    /// <summary>Admission cost in fair queueing: positions it will occupy.</summary>
    public long Cost => PromptPositions + Request.MaxNewTokens;

    public static double Seconds(long from, long to) => to <= from ? 0 : Stopwatch.GetElapsedTime(from, to).TotalSeconds;
}
