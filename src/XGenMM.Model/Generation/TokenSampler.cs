namespace XGenMM.Model.Generation;

/// <summary>
/// Chooses the next token of one sequence from its logits, on the CPU, with a private seeded generator so that a
/// request's samples do not depend on what else shares its batch.
/// </summary>
public sealed class TokenSampler
{
    private const int FastNucleusCandidates = 256;
    private readonly SamplingOptions _options;
    private readonly Xoshiro256 _rng;
    private readonly HashSet<int> _seen = [];
    private float[] _scratch = [];
    private int[] _order = [];

    public TokenSampler(SamplingOptions options, IEnumerable<int>? promptIds = null)
    {
        options.Validate();
        _options = options;
        _rng = new Xoshiro256(options.Seed ?? (ulong)Random.Shared.NextInt64());
        if (promptIds is not null && options.RepetitionPenalty != 1f) _seen.UnionWith(promptIds);
    }

    /// <summary>Records a token produced by this sequence (for the repetition penalty).</summary>
    public void Observe(int token)
    {
        if (_options.RepetitionPenalty != 1f) _seen.Add(token);
    }

    /// <summary>Picks the next token from <paramref name="logits"/> (one row, the output vocabulary).</summary>
    public int Next(ReadOnlySpan<float> logits)
    {
        if (_scratch.Length != logits.Length) _scratch = new float[logits.Length];
        var x = _scratch.AsSpan();
        logits.CopyTo(x);
        if (_options.RepetitionPenalty != 1f)
        {
            float penalty = _options.RepetitionPenalty;
            foreach (int id in _seen)
                if ((uint)id < (uint)x.Length) x[id] = x[id] < 0 ? x[id] * penalty : x[id] / penalty;
        }
        int token = _options.IsGreedy ? ArgMax(x) : Sample(x);
        Observe(token);
        return token;
    }

    /// <summary>First index of the maximum (torch.argmax semantics for ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        float max = x[0];
        for (int i = 1; i < x.Length; i++)
            if (x[i] > max) { max = x[i]; best = i; }
        return best;
    }

    private int Sample(Span<float> x)
    {
        float invT = 1f / _options.Temperature;
        float max = float.NegativeInfinity;
        for (int i = 0; i < x.Length; i++) max = Math.Max(max, x[i]);
        // Candidates sorted by logit, descending: the top-k, else a fast top-N slice that is extended to the full
        // vocabulary only if its probability mass does not reach top_p.
        int k = _options.TopK > 0 ? Math.Min(_options.TopK, x.Length) : x.Length;
        int take = Math.Min(k, _options.TopP < 1f ? FastNucleusCandidates : k);
        double total = 0;
        for (int i = 0; i < x.Length; i++) total += Math.Exp((x[i] - max) * invT);
        int count = TopIndices(x, take);
        double mass = 0;
        for (int i = 0; i < count; i++) mass += Math.Exp((x[_order[i]] - max) * invT);
        if (take < k && mass / total < _options.TopP)
        {
            count = TopIndices(x, k);
            mass = 0;
            for (int i = 0; i < count; i++) mass += Math.Exp((x[_order[i]] - max) * invT);
        }
        // Within the top-k candidates, renormalise and apply the nucleus cut (always keeping the best token).
        double norm = _options.TopK > 0 ? mass : total;
        int keep = count;
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < count; i++)
            {
                cumulative += Math.Exp((x[_order[i]] - max) * invT) / norm;
                if (cumulative >= _options.TopP) { keep = i + 1; break; }
            }
        }
        double keptMass = 0;
        for (int i = 0; i < keep; i++) keptMass += Math.Exp((x[_order[i]] - max) * invT);
        double u = _rng.NextDouble() * keptMass;
        for (int i = 0; i < keep; i++)
        {
            u -= Math.Exp((x[_order[i]] - max) * invT);
            if (u <= 0) return _order[i];
        }
        return _order[keep - 1];
    }

    /// <summary>Fills _order[0..n) with the indices of the n largest values, descending (ties: lower index first).</summary>
    private int TopIndices(ReadOnlySpan<float> x, int n)
    {
        if (_order.Length < x.Length) _order = new int[x.Length];
        if (n >= x.Length)
        {
            for (int i = 0; i < x.Length; i++) _order[i] = i;
            var values = x.ToArray();
            Array.Sort(_order, 0, x.Length, Comparer<int>.Create((a, b) => values[b] != values[a] ? values[b].CompareTo(values[a]) : a.CompareTo(b)));
            return x.Length;
        }
        // Min-heap of size n over (value, index).
        var heap = new PriorityQueue<int, (float Value, int NegIndex)>(n + 1);
        for (int i = 0; i < x.Length; i++)
        {
            heap.Enqueue(i, (x[i], -i));
            if (heap.Count > n) heap.Dequeue();
        }
        int count = heap.Count;
        for (int i = count - 1; i >= 0; i--) _order[i] = heap.Dequeue();
        return count;
    }

    /// <summary>xoshiro256** seeded through SplitMix64: small, fast and identical on every platform.</summary>
    private sealed class Xoshiro256
    {
        private ulong _s0, _s1, _s2, _s3;

        public Xoshiro256(ulong seed)
        {
            _s0 = SplitMix(ref seed); _s1 = SplitMix(ref seed); _s2 = SplitMix(ref seed); _s3 = SplitMix(ref seed);
        }

        private static ulong SplitMix(ref ulong x)
        {
            ulong z = x += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

        private ulong Next()
        {
            ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
            ulong t = _s1 << 17;
            _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t;
            _s3 = ulong.RotateLeft(_s3, 45);
            return result;
        }
    }
}
