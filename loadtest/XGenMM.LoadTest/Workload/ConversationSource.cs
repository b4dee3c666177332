using System.Collections.Concurrent;
using System.Globalization;
using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;

namespace XGenMM.LoadTest.Workload;

/// <summary>
/// Hands out the next request of the workload: a follow-up turn of a conversation whose last turn has been answered
/// when there is one, else the opening turn of a new conversation. Tenants take turns in proportion to their shares
/// (smooth weighted round robin: exact proportions even in short runs). Deterministic per seed and conversation
/// number; conversation numbers keep counting across points, so unique images stay unique for the whole experiment.
/// </summary>
public sealed class ConversationSource
{
    private readonly ExperimentSettings _s;
    private readonly object _gate = new();
    private readonly ConcurrentQueue<TurnRequest> _followUps = new();
    private readonly Queue<TurnRequest> _prepared = new();
    private readonly double[] _credit;
    private readonly byte[][] _pool;
    private readonly int _seedBase;
    private int _conversations;

    public ConversationSource(ExperimentSettings settings)
    {
        _s = settings;
        _credit = new double[settings.Tenants.Count];
        _seedBase = StableHash(settings.Name) ^ settings.Seed * 7919;
        var sizes = settings.EffectiveImageSizes;
        int poolSize = settings.ImageReuse == ImageReuse.Repeated && settings.ImagesPerRequest > 0
            ? (settings.ImagePool > 0 ? settings.ImagePool : sizes.Count) : 0;
        _pool = [.. Enumerable.Range(0, poolSize).Select(i => ImageFactory.Png(sizes[i % sizes.Count].Width, sizes[i % sizes.Count].Height, _seedBase + 1_000_000 + i))];
    }

    /// <summary>Images in the repeated pool (0 for unique images).</summary>
    public int PoolSize => _pool.Length;

    /// <summary>Forgets follow-ups still waiting (a point's conversations end with the point).</summary>
    public void EndPoint()
    {
        _followUps.Clear();
    }

    /// <summary>Builds the opening turns of the next <paramref name="count"/> conversations now (images included), so that drawing them later costs nothing.</summary>
    public void Prepare(int count)
    {
        lock (_gate)
            while (_prepared.Count < count) _prepared.Enqueue(Open());
    }

    public TurnRequest Next()
    {
        if (_followUps.TryDequeue(out var next)) return next;
        lock (_gate)
            return _prepared.Count > 0 ? _prepared.Dequeue() : Open();
    }

    /// <summary>Records the answer; a successful turn that is not the last queues the conversation's next turn.</summary>
    public void Answered(TurnRequest request, RequestRecord record)
    {
        if (!record.Success || request.Turn + 1 >= _s.Turns) return;
        var random = new Random(_seedBase ^ StableHash(request.ConversationId) * 31 + request.Turn + 1);
        int words = PromptFactory.Length(random, _s.InputWords, _s.InputRange);
        var messages = new List<MessageSpec>(request.Messages)
        {
            new("assistant", record.Answer, []),
            new("user", PromptFactory.Text(random, words, $"{request.ConversationId}.{request.Turn + 1}"), []),
        };
        _followUps.Enqueue(new TurnRequest
        {
            Tenant = request.Tenant,
            ConversationId = request.ConversationId,
            Turn = request.Turn + 1,
            Messages = messages,
            MaxTokens = request.MaxTokens,
            IgnoreEos = request.IgnoreEos,
            Temperature = request.Temperature,
            Seed = request.Seed,
            InputWords = words,
        });
    }

    private TurnRequest Open()
    {
        int k = _conversations++;
        var tenant = NextTenant();
        var random = new Random(_seedBase + k);
        int words = PromptFactory.Length(random, _s.InputWords, _s.InputRange);
        string id = string.Create(CultureInfo.InvariantCulture, $"{_s.Name.Replace(' ', '-')}-{k}");
        var images = new List<byte[]>(_s.ImagesPerRequest);
        var sizes = _s.EffectiveImageSizes;
        for (int j = 0; j < _s.ImagesPerRequest; j++)
        {
            int n = k * _s.ImagesPerRequest + j;
            images.Add(_pool.Length > 0 ? _pool[n % _pool.Length] : ImageFactory.Png(sizes[n % sizes.Count].Width, sizes[n % sizes.Count].Height, _seedBase + n));
        }
        return new TurnRequest
        {
            Tenant = tenant,
            ConversationId = id,
            Turn = 0,
            Messages = [new MessageSpec("user", PromptFactory.Text(random, words, id), images)],
            MaxTokens = _s.OutputTokens,
            IgnoreEos = _s.IgnoreEos,
            Temperature = _s.Temperature,
            Seed = _s.Seed + k,
            InputWords = words,
        };
    }

    private TenantSpec NextTenant()
    {
        double total = 0;
        int best = -1;
        for (int i = 0; i < _credit.Length; i++)
        {
            double share = _s.Tenants[i].Share;
            if (share <= 0) continue;
            _credit[i] += share;
            total += share;
            if (best < 0 || _credit[i] > _credit[best]) best = i;
        }
        _credit[best] -= total;
        return _s.Tenants[best];
    }

    /// <summary>FNV-1a: string.GetHashCode differs between processes.</summary>
    internal static int StableHash(string text)
    {
        uint h = 2166136261;
        foreach (char c in text) { h ^= c; h *= 16777619; }
        return (int)(h & 0x3fffffff);
    }
}
