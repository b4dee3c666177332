using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Client;
using XGenMM.Gateway.Hosting;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway with one decoder of two slots and a TTFT target far below the time two long answers hold
/// both slots: a third request must wait for a slot, so admission control refuses it.</summary>
public sealed class AdmissionGatewayFixture : GatewayFixture
{
    public const int Slots = 2;
    public const double TtftTargetSeconds = 0.25;
    /// <summary>Long enough that its remaining tokens outlast the target many times over at any decode speed this
    /// model reaches on a CPU, and still fit the engine's context (2048) with the prompt.</summary>
    public const int LongAnswer = 2000;

    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["Engine:Decode:MaxSlots"] = Slots.ToString(CultureInfo.InvariantCulture);
        settings["Gateway:Limits:MaxPromptTokens"] = "100";
        settings["Gateway:Limits:MaxCompletionTokens"] = LongAnswer.ToString(CultureInfo.InvariantCulture);
        settings["Cluster:Admission:TtftTargetSeconds"] = TtftTargetSeconds.ToString(CultureInfo.InvariantCulture);
        // The router reads the registry as often as it may, so that it sees both slots held soon after they are. The
        // decoder runs on libtorch's operators, not the CPU kernels: with the kernels this tiny model decodes a token in
        // about 0.35 ms, and 2000-token answers ended within the decoders' 1 s load reports.
        settings["Cluster:Routing:RegistryRefresh"] = "00:00:00.100";
        settings["Model:WeightFormat"] = "torch";
    }
}

[CollectionDefinition(Name)]
public sealed class AdmissionGatewayTests : ICollectionFixture<AdmissionGatewayFixture>
{
    public const string Name = "admission gateway";
}

/// <summary>Admission control through the API: refusals at the door with 503 over_capacity and Retry-After.</summary>
[Collection(AdmissionGatewayTests.Name)]
public sealed class AdmissionTests(AdmissionGatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private JsonObject Body(string text, int maxTokens) => new()
    {
        ["model"] = gateway.ModelId,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text }),
        ["max_tokens"] = maxTokens,
        ["temperature"] = 0,
        ["ignore_eos"] = true,
    };

    [Fact(Timeout = 240_000)]
    public async Task A_saturated_decoder_refuses_a_further_request_at_once_with_503_and_retry_after_while_admitted_ones_complete_and_without_admission_it_queues()
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var router = gateway.App.Services.GetRequiredService<IClusterChat>();
        double refusedBefore = await gateway.MetricAsync("xgenmm_requests_rejected_total", "{reason=\"over_capacity\"}");
        var admitted = Enumerable.Range(0, AdmissionGatewayFixture.Slots)
            .Select(i => http.PostAsJsonAsync("/v1/chat/completions", Body($"Long answer {i}", AdmissionGatewayFixture.LongAnswer), Ct)).ToArray();

        // What the router sees (the gateway's own registry view): both slots held with most of their answers left.
        DecoderLoadReport saturated;
        try
        {
            saturated = await SaturatedAsync(router);
        }
        catch (TimeoutException e)
        {
            var ended = admitted.Where(t => t.IsCompleted).Select(t => t.IsCompletedSuccessfully ? $"{(int)t.Result.StatusCode} {t.Result.Content.ReadAsStringAsync(Ct).Result}" : t.Exception?.InnerException?.Message);
            throw new TimeoutException($"{e.Message}; the long answers that ended: {string.Join(" | ", ended)}", e);
        }
        Assert.True(saturated.DecodeStepSeconds > 0, "the engine measured its decode step");
        Assert.True(saturated.PrefillSecondsPerToken > 0, "the engine measured its prefill cost");
        var predicted = CapacityModel.Predict(saturated, 32);
        Assert.True(predicted.WaitSeconds > AdmissionGatewayFixture.TtftTargetSeconds,
            $"a full decoder with {saturated.RemainingTokens[0]} tokens before its first free slot is predicted over the target: {predicted} from running {saturated.Running}, waiting {saturated.Waiting}, slots {saturated.TotalSlots}, row limit {saturated.RowLimit}, decode step {saturated.DecodeStepSeconds * 1000:0.###} ms, remaining [{string.Join(' ', saturated.RemainingTokens)}]");

        var chat = gateway.App.Services.GetRequiredService<Chat.ChatService>();
        long tokenized = chat.TokenizerCalls;
        using var refused = await http.PostAsJsonAsync("/v1/chat/completions", Body("One more", 4), Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        // Refused at the door on the router's view, before the tokenizer (and the tenant's quota grain).
        Assert.Equal(tokenized, chat.TokenizerCalls);
        Assert.True(refused.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 and <= 30 }, $"Retry-After: {refused.Headers.RetryAfter}");
        var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(Ct))!["error"]!;
        Assert.Equal("over_capacity", (string?)error["code"]);
        Assert.Equal("server_error", (string?)error["type"]);
        Assert.True(await gateway.MetricAsync("xgenmm_requests_rejected_total", "{reason=\"over_capacity\"}") >= refusedBefore + 1);

        // The same cluster behind a router with admission control off: the request is queued on the full decoder and
        // answered once a slot frees, never refused.
        var unguarded = new ClusterChat(gateway.App.Services.GetRequiredService<IGrainFactory>(),
            Options.Create(new ClusterChatOptions { RegistryRefresh = TimeSpan.Zero, Admission = { TtftTargetSeconds = 0 } }), NullLogger<ClusterChat>.Instance);
        using (unguarded)
        {
            var request = new GenerationRequest
            {
                RequestId = "admission-off",
                Tenant = "alpha",
                PromptIds = [.. gateway.App.Services.GetRequiredService<ServedModel>().Tokenizer.Encode("One more")],
                MaxNewTokens = 4,
            };
            var chunks = new List<GenerationChunk>();
            await foreach (var chunk in unguarded.GenerateAsync(request, cancellationToken: Ct)) chunks.Add(chunk);
            Assert.True(chunks[^1].IsFinal);
            Assert.Equal(4, chunks.Count(c => !c.IsFinal));
        }

        foreach (var task in admitted)
        {
            using var response = await task;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
            Assert.Equal("length", (string?)body["choices"]![0]!["finish_reason"]);
            Assert.Equal(AdmissionGatewayFixture.LongAnswer, (int)body["usage"]!["completion_tokens"]!);
        }
    }

    /// <summary>The router's report once both slots are held with at least a quarter of their answers left (500
    /// tokens, seconds at any speed of this model: with the CPU kernels a half once ended before the view showed it).</summary>
    private static async Task<DecoderLoadReport> SaturatedAsync(IClusterChat router)
    {
        DecoderLoadReport[] decoders = [];
        for (int i = 0; i < 1200; i++)
        {
            decoders = await router.GetDecodersAsync(Ct);
            if (decoders is [{ Running: AdmissionGatewayFixture.Slots, RemainingTokens: [var first, ..] } d] && first >= AdmissionGatewayFixture.LongAnswer / 4
                && d.DecodeStepSeconds > 0)
                return d;
            await Task.Delay(25, Ct);
        }
        throw new TimeoutException("The decoder never reported both slots held by the long answers; last: "
            + string.Join("; ", decoders.Select(d => $"running {d.Running}, waiting {d.Waiting}, slots {d.TotalSlots}, decode step {d.DecodeStepSeconds}, remaining [{string.Join(' ', d.RemainingTokens)}]")));
    }
}
