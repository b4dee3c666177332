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
        // Before sampling: the repetition penalty must not yet see the token sampled now.
        var (logprob, top) = s.Request.TopLogprobs is int n ? Logprobs(s, logits, n) : (null, null);
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
        s.Events.Writer.TryWrite(new DecodeEvent
        {
            TokenId = token, Text = text, Index = index,
            Logprob = logprob?[token], TopLogprobs = top,
        });
        return finish;
    }

    /// <summary>
    /// The log-softmax of the logits the sampler draws from (repetition penalty applied, divided by the temperature;
    /// greedy counts as temperature 1), and its <paramref name="n"/> most likely tokens. Top-k and top-p are left out:
    /// they cut the candidates, not the model's distribution. Only for sequences that asked, so others pay nothing.
    /// </summary>
    private (double[] Logprobs, TokenLogprob[] Top) Logprobs(Sequence s, ReadOnlySpan<float> logits, int n)
    {
        var sampling = s.Request.Sampling;
        var x = logits.ToArray();
        if (sampling.RepetitionPenalty != 1f)
        {
            float penalty = sampling.RepetitionPenalty;
            foreach (int id in s.Request.PromptIds.Concat(s.Completion).ToHashSet())
                if ((uint)id < (uint)x.Length) x[id] = x[id] < 0 ? x[id] * penalty : x[id] / penalty;
        }
        double invT = sampling.IsGreedy ? 1.0 : 1.0 / sampling.Temperature;
        float max = x.Max();
        double sum = 0;
        foreach (float v in x) sum += Math.Exp((v - max) * invT);
        double logZ = Math.Log(sum);
        var logprobs = new double[x.Length];
        for (int i = 0; i < x.Length; i++) logprobs[i] = (x[i] - max) * invT - logZ;

        // The n best by insertion into a sorted window: n is at most 20, the vocabulary tens of thousands.
        var best = new int[n];
        int count = 0;
        for (int i = 0; i < x.Length && n > 0; i++)
        {
            if (count == n && !(x[i] > x[best[n - 1]])) continue;
            int j = count < n ? count++ : n - 1;
            while (j > 0 && x[best[j - 1]] < x[i]) { best[j] = best[j - 1]; j--; }
            best[j] = i;
        }
        var top = new TokenLogprob[count];
        for (int k = 0; k < count; k++) top[k] = new TokenLogprob(best[k], tokenizer.Decode([best[k]]), logprobs[best[k]]);
        return (logprobs, top);
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
            completed(new DecodeCompletion(s.Request.RequestId, s.Request.Tenant, reason, usage, timings, s.ItlSamples.Skip(1).ToArray())
            {
                PromptTokens = s.PromptPositions,
                GeneratedTokens = generated,
                QueueSeconds = timings.QueueSeconds,
                PrefillSeconds = timings.PrefillSeconds,
                DecodeSeconds = s.FirstTokenTimestamp == 0 ? 0 : Sequence.Seconds(s.FirstTokenTimestamp, now),
            });
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
