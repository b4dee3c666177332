using System.Diagnostics;
using Microsoft.Extensions.Logging;
using XGenMM.Model.Generation;
using XGenMM.Model.Tokenization;

namespace XGenMM.Engine.Decoding;

/// <summary>
/// The output side of a step: samples each sequence's next token from its logits, detokenises incrementally, applies
/// stop tokens, stop strings and the length limit, streams <see cref="DecodeEvent"/>s, and reports completions and
/// latency statistics. Runs on the engine thread.
/// </summary>
internal sealed partial class OutputProcessor(XGenMMTokenizer tokenizer, EngineStatistics statistics, ILogger logger, Action<DecodeCompletion> completed)
{
    /// <summary>Sets up sampling and text state of an admitted sequence.</summary>
    public void Start(Sequence s)
    {
        s.Sampler = new TokenSampler(s.Request.Sampling, s.Request.PromptIds);
        s.Decoder = tokenizer.CreateIncrementalDecoder(skipSpecialTokens: true);
        s.Stops = new StopStringMatcher(s.Request.StopStrings);
        foreach (int t in s.Request.ResumeTokenIds)
        {
            // Replayed tokens were streamed by the earlier attempt: prime the text state, emit nothing.
            s.Sampler.Observe(t);
            s.Stops.Push(s.Decoder.Push(t));
            s.Completion.Add(t);
        }
    }

    /// <summary>Samples the next token from one row of logits and streams it; returns the finish reason when a stop
    /// rule fires (the caller then releases the slot and calls <see cref="Finish"/>).</summary>
    public DecodeFinishReason? Accept(Sequence s, ReadOnlySpan<float> logits)
    {
        int token = s.Sampler!.Next(logits);
        long now = Stopwatch.GetTimestamp();
        bool first = s.FirstTokenTimestamp == 0;
        if (first)
        {
            s.FirstTokenTimestamp = now;
            s.PrefillEndTimestamp = now;
            statistics.RecordTtft(Sequence.Seconds(s.ArrivalTimestamp, now));
        }
        else statistics.RecordItl(Sequence.Seconds(s.LastTokenTimestamp, now));
        s.LastTokenTimestamp = now;
        s.ItlSamples.Add(first ? 0 : Sequence.Seconds(s.ItlPrevious, now));
        s.ItlPrevious = now;
        statistics.CountToken(now);

        int index = s.Completion.Count;
        s.Completion.Add(token);
        s.PendingToken = token;
        DecodeFinishReason? finish = null;
        string text;
        if (s.Request.StopTokenIds.Contains(token))
        {
            text = "";
            finish = DecodeFinishReason.Stop;
        }
        else
        {
            text = s.Stops!.Push(s.Decoder!.Push(token));
            if (s.Stops.Stopped) finish = DecodeFinishReason.Stop;
        }
        if (finish is null && s.Completion.Count >= s.Request.MaxNewTokens) finish = DecodeFinishReason.Length;
        if (finish is not null) text += s.Stops!.Push(s.Decoder!.Flush()) + s.Stops.Flush();
        s.Events.Writer.TryWrite(new DecodeEvent { TokenId = token, Text = text, Index = index });
        return finish;
    }

    /// <summary>Ends the stream of a sequence that has given up its slot: the final event (none for a cancellation,
    /// whose consumer is gone), the completion report, and <paramref name="error"/> when the engine cut it.</summary>
    public void Finish(Sequence s, DecodeFinishReason reason, EngineRejectedException? error = null)
    {
        long now = Stopwatch.GetTimestamp();
        int generated = s.Completion.Count - s.Request.ResumeTokenIds.Count;
        var usage = new DecodeUsage(s.PromptTextTokens, s.ImageTokens, s.Completion.Count, s.ReusedTokens);
        var timings = new DecodeTimings(
            Sequence.Seconds(s.ArrivalTimestamp, s.AdmittedTimestamp),
            s.FirstTokenTimestamp == 0 ? 0 : Sequence.Seconds(s.ArrivalTimestamp, s.FirstTokenTimestamp),
            Sequence.Seconds(s.ArrivalTimestamp, now),
            s.PrefillStartTimestamp == 0 ? 0 : Sequence.Seconds(s.PrefillStartTimestamp, s.PrefillEndTimestamp == 0 ? now : s.PrefillEndTimestamp));
        if (reason != DecodeFinishReason.Cancelled)
            s.Events.Writer.TryWrite(new DecodeEvent { Finish = reason, Usage = usage, Timings = timings, Index = s.Completion.Count });
        Complete(s, error);
        LogFinished(s.Request.RequestId, s.Request.Tenant, reason, generated, timings.TimeToFirstTokenSeconds * 1000, timings.EndToEndSeconds * 1000);
        try
        {
            completed(new DecodeCompletion(s.Request.RequestId, s.Request.Tenant, reason, usage, timings, s.ItlSamples.Skip(1).ToArray()));
        }
#pragma warning disable CA1031 // a metrics handler must never take the engine down
        catch (Exception e) { LogHandlerFailed(e); }
#pragma warning restore CA1031
    }

    /// <summary>Ends a request that never got to run (rejected, expired, cancelled while waiting) or failed.</summary>
    public void Reject(Sequence s, Exception? error)
    {
        if (error is EngineRejectedException { Reason: RejectionReason.Expired }) LogExpired(s.Request.RequestId, s.Request.Tenant);
        Complete(s, error);
    }

    private static void Complete(Sequence s, Exception? error)
    {
        s.Events.Writer.TryComplete(error);
        s.Registration.Dispose();
    }

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Request {RequestId} of {Tenant} finished ({Reason}): {Tokens} tokens, TTFT {TtftMs:F1} ms, total {TotalMs:F1} ms")]
    private partial void LogFinished(string requestId, string tenant, DecodeFinishReason reason, int tokens, double ttftMs, double totalMs);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Request {RequestId} of {Tenant} expired in the queue")]
    private partial void LogExpired(string requestId, string tenant);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "A completion handler threw")]
    private partial void LogHandlerFailed(Exception exception);
}
