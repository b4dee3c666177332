using System.Net.Http.Json;
using System.Text.Json.Nodes;
using XGenMM.Model.Imaging;

namespace XGenMM.Gateway.Tests;

/// <summary>Runs alone: it counts a process-wide figure (content keys computed), which other tests would move.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialGatewayTests
{
    public const string Name = "serial gateway";
}

/// <summary>An image has one identity from the gateway to the engine's cache, hashed once per image per request.</summary>
[Collection(SerialGatewayTests.Name)]
public sealed class ImageIdentityTests : IClassFixture<GatewayFixture>
{
    private readonly GatewayFixture _gateway;

    public ImageIdentityTests(GatewayFixture gateway) => _gateway = gateway;

    [Fact(Timeout = 120_000)]
    public async Task Each_image_of_a_request_is_hashed_once_from_the_gateway_to_the_vision_cache()
    {
        // Two different images and the first one again: three images, three keys; the repeat is a cache hit that must
        // not be hashed again on the vision side either.
        byte[] photo = TestImages.Photo, wide = TestImages.Wide;
        using var http = _gateway.Client(GatewayFixture.AlphaKey);
        long before = ImageContentKey.Computed;
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", Body(photo, wide, photo), TestContext.Current.CancellationToken);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        Assert.Equal(3, ImageContentKey.Computed - before);

        before = ImageContentKey.Computed;
        using var again = await http.PostAsJsonAsync("/v1/chat/completions", Body(wide), TestContext.Current.CancellationToken);
        Assert.True(again.IsSuccessStatusCode);
        Assert.Equal(1, ImageContentKey.Computed - before);
    }

    private JsonObject Body(params byte[][] images)
    {
        var content = new JsonArray();
        foreach (var image in images)
            content.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = TestImages.DataUrl(image, image[0] == 0xFF ? "image/jpeg" : "image/png") } });
        content.Add(new JsonObject { ["type"] = "text", ["text"] = "What is in the images?" });
        return new JsonObject
        {
            ["model"] = _gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["max_tokens"] = 4,
            ["temperature"] = 0,
        };
    }
}
