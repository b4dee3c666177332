using System.Text.Json.Nodes;
using XGenMM.Gateway.Hosting;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// The chat page at / in Debian's Chromium, driven by playwright-core (node/chat-page.mjs) against the gateway serving
/// xgenmm-nano: what a person does (enter the key, attach a picture, ask, stop) and what they must see.
/// </summary>
[Collection(NanoGatewayTests.Name)]
public sealed class BrowserTests(NanoGatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<JsonNode> RunPageAsync(string scenario, Dictionary<string, object?> input)
    {
        NodeScript.RequireInstalled(chromium: true);
        string image = NanoScene.WritePng();
        try
        {
            input["scenario"] = scenario;
            input["baseUrl"] = gateway.BaseAddress.ToString();
            input["apiKey"] = GatewayFixture.AlphaKey;
            input["image"] = image;
            input["chromium"] = NodeScript.Chromium;
            input["screenshot"] = Path.Combine(Path.GetTempPath(), $"xgenmm-chat-{scenario}.png");
            return await NodeScript.RunAsync("chat-page.mjs", input, TimeSpan.FromSeconds(90), Ct);
        }
        finally
        {
            File.Delete(image);
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task The_page_answers_a_question_about_an_attached_image_on_a_phone()
    {
        var result = await RunPageAsync("answer", new()
        {
            ["question"] = NanoScene.ColorQuestion,
            ["followUp"] = NanoScene.CountQuestion,
        });

        var connected = result["connected"]!;
        Assert.Equal("The gateway refused this API key (401).", (string?)connected["refused"]!["error"]);
        Assert.Equal("key refused", (string?)connected["refused"]!["status"]);
        Assert.True((bool)connected["keyErrorHidden"]!, "the refusal goes away once a good key connects");
        Assert.Equal(NanoGatewayFixture.ModelName, (string?)connected["model"]);
        Assert.Contains($"at most {NanoGatewayFixture.MaxCompletionTokens} new tokens", (string?)connected["limits"], StringComparison.Ordinal);
        Assert.Equal(GatewayFixture.AlphaKey, (string?)connected["storedKey"]);
        Assert.True((bool)connected["settingsHidden"]!, "the settings close once the key connects");
        Assert.Equal(["pasted.png", "dropped.png"], result["pastedAndDropped"]!.AsArray().Select(n => (string?)n));
        Assert.True((bool)result["overlayHidden"]!, "the drop overlay goes away after the drop");
        Assert.Equal(0, (int)result["previewsAfterRemove"]!);
        Assert.Equal(1, (int)result["previews"]!);

        var first = result["first"]!;
        Assert.Null((string?)first["error"]);
        Assert.Equal("done", (string?)first["state"]);
        // xgenmm-nano is still weak (issue 4: 45% on held-out questions; it calls this star purple), so the page's answer is
        // held to what the HTTP API answers on the same gateway for the same picture and question (greedy): the page must
        // deliver the same image and text. The follow-up below is one the model answers right.
        Assert.Equal(NanoScene.Normalize(await gateway.HttpAnswerAsync(NanoScene.ColorQuestion, NanoScene.Png())), NanoScene.Normalize((string)first["text"]!));
        Assert.True((int)first["updates"]! >= 1, "the answer was written into the page as it streamed");
        Assert.Contains("completion tokens", (string?)first["meta"], StringComparison.Ordinal);

        // Multi-turn: the follow-up is asked without the image; the page sends the history (image included).
        var followUp = result["followUp"]!;
        Assert.Null((string?)followUp["error"]);
        Assert.Equal("done", (string?)followUp["state"]);
        Assert.Equal(NanoScene.CountAnswer, NanoScene.Normalize((string)followUp["text"]!));

        // A hub error ("STATUS code: message") shows inline and the question comes back into the composer.
        Assert.StartsWith("400 invalid_image:", (string?)result["hubError"], StringComparison.Ordinal);
        Assert.Equal("What is this?", (string?)result["restoredPrompt"]);

        var layout = result["layout"]!;
        Assert.Equal(390, (int)layout["width"]!);
        Assert.True((int)layout["scrollWidth"]! <= 390, $"no sideways scrolling at a phone's width (content is {layout["scrollWidth"]} px wide)");
        Assert.Equal(2, (int)layout["userImages"]!); // the question's picture and the broken one
        // Only the newest good answer (the follow-up's) can be regenerated; the failed turn has no buttons.
        Assert.Equal([false, true, false], layout["regenerateOn"]!.AsArray().Select(n => (bool)n!));
        Assert.Empty(result["consoleErrors"]!.AsArray());
    }

    [Fact(Timeout = 120_000)]
    public async Task Stop_ends_the_stream_and_frees_the_decode_slot()
    {
        int maxTokens = NanoGatewayFixture.MaxCompletionTokens;
        var result = await RunPageAsync("stop", new()
        {
            ["question"] = NanoScene.DescribeQuestion,
            ["maxTokens"] = maxTokens,
        });

        Assert.Equal("streaming", (string?)result["stateBefore"]);
        Assert.Equal(1, (double)result["runningBefore"]!);
        Assert.Equal("stopped", (string?)result["state"]);
        Assert.StartsWith("stopped after", (string?)result["meta"], StringComparison.Ordinal);
        int updates = (int)result["updatesAtStop"]!;
        Assert.True(updates < maxTokens, $"stopped mid-stream ({updates} updates of at most {maxTokens})");
        Assert.Equal((int)result["charsAtStop"]!, (int)result["charsLater"]!);
        Assert.True((bool)result["sendVisible"]!);
        Assert.False((bool)result["stopVisible"]!);
        Assert.True((double)result["runningAfter"]! == 0,
            $"the decode slot is freed: xgenmm_num_requests_running{{device=\"cpu\"}} is {result["runningAfter"]} {result["freedAfterMs"]} ms after stop");
        Assert.Equal(0, (double)result["signalrStreamsAfter"]!);
        Assert.Empty(result["consoleErrors"]!.AsArray());
    }

    [Fact(Timeout = 120_000)]
    public async Task Without_a_key_the_page_asks_for_one_and_with_one_it_shows_the_model_card_and_the_default_max_tokens()
    {
        var result = await RunPageAsync("key", []);

        var noKey = result["noKey"]!;
        Assert.True((bool)noKey["promptVisible"]!, "without a key the composer asks for one");
        Assert.Contains("enter the API key the gateway printed", (string?)noKey["promptText"], StringComparison.Ordinal);
        Assert.Equal("no API key", (string?)noKey["status"]);
        Assert.True((bool)noKey["sendDisabledEmpty"]!, "nothing to send yet");
        Assert.False((bool)noKey["sendDisabledWithText"]!, "Send is not silently greyed out for want of a key");
        Assert.True((bool)noKey["settingsHiddenAfterClose"]!);
        Assert.Equal("Not connected: enter an API key first.", (string?)noKey["composerError"]);
        Assert.True((bool)noKey["settingsVisibleAfterSend"]!, "Send without a key opens the key box");
        Assert.Equal(0, (int)noKey["messages"]!);
        Assert.True((bool)noKey["keyFocused"]!, "the prompt's button puts the cursor in the key box");
        Assert.True((bool)noKey["modelCardHidden"]!, "no model card before the hub says what the model is");

        var refused = result["refused"]!;
        Assert.True((bool)refused["promptVisible"]!);
        Assert.Contains("refused this API key", (string?)refused["promptText"], StringComparison.Ordinal);

        var connected = result["connected"]!;
        string defaultMaxTokens = new RequestLimits().DefaultMaxTokens.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.True((bool)connected["promptHidden"]!, "the key prompt goes away once a key connects");
        Assert.True((bool)connected["composerErrorHidden"]!, "so does the 'not connected' of the Send before");
        // The card is the first paragraph of models/xgenmm-nano/README.md: what the model knows, and that general questions get nonsense.
        Assert.True((bool)connected["modelCardVisible"]!);
        Assert.False((bool)connected["modelCardClipped"]!, "at a desktop's width all of the card shows");
        string card = (string)connected["modelCard"]!;
        Assert.Contains("synthetic pictures", card, StringComparison.Ordinal);
        Assert.Contains("general questions get nonsense", card, StringComparison.Ordinal);
        Assert.Equal(ServedModel.ReadCard(NanoGatewayFixture.ResolveModel()), card);
        Assert.Equal(defaultMaxTokens, (string?)connected["maxTokens"]);
        Assert.Equal(defaultMaxTokens, (string?)connected["maxTokensPlaceholder"]);
        Assert.Equal($"Max tokens (default {defaultMaxTokens})", (string?)connected["maxTokensLabel"]);
        Assert.Equal(0, (int)connected["ignoreEosSwitches"]!);
        Assert.DoesNotContain("Don't stop", (string?)connected["settingsText"], StringComparison.Ordinal);
        Assert.Empty(result["consoleErrors"]!.AsArray());
    }

    [Fact(Timeout = 120_000)]
    public async Task Copy_puts_an_answer_on_the_clipboard_and_Regenerate_asks_the_last_question_again()
    {
        var result = await RunPageAsync("actions", new()
        {
            ["question"] = NanoScene.CountQuestion,
            ["followUp"] = NanoScene.ColorQuestion,
        });

        string first = (string)result["firstText"]!;
        Assert.Equal(NanoScene.CountAnswer, NanoScene.Normalize(first));
        Assert.Equal(["Copy", "Regenerate"], result["buttons"]!.AsArray().Select(n => (string?)n));
        Assert.Equal("Copied", (string?)result["copyLabel"]);
        Assert.Equal(first, (string?)result["clipboard"]);

        var regenerated = result["regenerated"]!;
        Assert.Equal("done", (string?)regenerated["state"]);
        Assert.Equal(first, (string?)regenerated["text"]); // greedy: the same question gets the same answer
        Assert.Equal(1, (int)regenerated["answers"]!); // the answer was replaced, not added
        Assert.Equal(1, (int)regenerated["users"]!);
        var turns = regenerated["turns"]!.AsArray();
        Assert.Equal(2, turns.Count);
        Assert.Equal(turns[0]!.ToJsonString(), turns[1]!.ToJsonString()); // the same user turn, image included
        Assert.Equal(1, (int)turns[1]!["messages"]![0]!["images"]!);

        var after = result["afterFollowUp"]!;
        Assert.Equal(1, (int)after["regenerateButtons"]!);
        Assert.Equal(1, (int)after["lastHasRegenerate"]!);
        Assert.Equal(2, (int)after["copyButtons"]!);
        // Regenerating the follow-up sends the first exchange as history and the follow-up again, not the old answer.
        var lastTurn = after["lastTurn"]!.AsArray();
        Assert.Equal(["user", "assistant", "user"], lastTurn.Select(m => (string?)m!["role"]));
        Assert.Equal(first, (string?)lastTurn[1]!["content"]);
        Assert.Equal(NanoScene.ColorQuestion, (string?)lastTurn[2]!["content"]);
        Assert.Equal(2, (int)after["answers"]!);
        Assert.Empty(result["consoleErrors"]!.AsArray());
    }
}
