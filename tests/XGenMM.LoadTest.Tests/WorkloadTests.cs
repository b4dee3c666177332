using SkiaSharp;
using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Workload;
using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;

namespace XGenMM.LoadTest.Tests;

public sealed class WorkloadTests
{
    [Fact]
    public void The_default_image_sizes_hit_every_anyres_grid()
    {
        var grids = PreprocessorConfig.DefaultAnyResGrids;
        var chosen = ImageFactory.AnyResSizes.Select(s => AnyResPreprocessor.SelectBestResolution(s, grids)).ToList();
        Assert.Equal(grids.OrderBy(g => g).ToList(), chosen.OrderBy(g => g).ToList());
    }

    [Fact]
    public void Images_are_pngs_of_the_asked_size_equal_per_seed_and_different_across_seeds()
    {
        byte[] a = ImageFactory.Png(300, 640, 1), again = ImageFactory.Png(300, 640, 1), other = ImageFactory.Png(300, 640, 2);
        Assert.Equal(a, again);
        Assert.NotEqual(a, other);
        using var bitmap = SKBitmap.Decode(a);
        Assert.Equal((300, 640), (bitmap.Width, bitmap.Height));
        Assert.Equal((640, 300), ImageFactory.ParseSize("640x300"));
        Assert.Throws<FormatException>(() => ImageFactory.ParseSize("640*300"));
    }

    [Fact]
    public void Prompts_have_the_asked_number_of_words()
    {
        var random = new Random(3);
        Assert.Equal(25, PromptFactory.Text(random, 25, "t").Split(' ').Length);
        var lengths = Enumerable.Range(0, 500).Select(_ => PromptFactory.Length(random, 100, 0.2)).ToList();
        Assert.InRange(lengths.Min(), 80, 85);
        Assert.InRange(lengths.Max(), 115, 120);
        Assert.Equal(7, PromptFactory.Length(random, 7, 0));
    }

    private static ExperimentSettings Settings(Action<ExperimentSettings> change)
    {
        var s = new ExperimentSettings { Name = "w", InputWords = 5, OutputTokens = 3 };
        s.Tenants.Add(new TenantSpec("a", "ka", 3));
        s.Tenants.Add(new TenantSpec("b", "kb", 1));
        s.Tenants.Add(new TenantSpec("off", "kc", 0));
        change(s);
        return s;
    }

    [Fact]
    public void Tenants_take_turns_in_exact_proportion_to_their_shares()
    {
        var source = new ConversationSource(Settings(_ => { }));
        var tenants = Enumerable.Range(0, 40).Select(_ => source.Next().Tenant.Label).ToList();
        Assert.Equal(30, tenants.Count(t => t == "a"));
        Assert.Equal(10, tenants.Count(t => t == "b"));
        // Spread out, not in blocks: every window of four has one b.
        Assert.All(tenants.Chunk(4), w => Assert.Single(w, t => t == "b"));
    }

    [Fact]
    public void Repeated_images_come_from_the_pool_and_unique_images_never_repeat()
    {
        var repeated = new ConversationSource(Settings(s => { s.ImagesPerRequest = 2; s.ImageReuse = ImageReuse.Repeated; s.ImagePool = 3; s.ImageSizes.Add((40, 30)); }));
        var seen = Enumerable.Range(0, 12).SelectMany(_ => repeated.Next().Messages[0].Images).Select(Convert.ToBase64String).ToList();
        Assert.Equal(3, seen.Distinct().Count());
        Assert.Equal(3, repeated.PoolSize);

        var unique = new ConversationSource(Settings(s => { s.ImagesPerRequest = 2; s.ImageSizes.Add((40, 30)); }));
        var fresh = Enumerable.Range(0, 12).SelectMany(_ => unique.Next().Messages[0].Images).Select(Convert.ToBase64String).ToList();
        Assert.Equal(24, fresh.Distinct().Count());
    }

    [Fact]
    public void A_follow_up_turn_carries_the_history_with_the_answer_received()
    {
        var source = new ConversationSource(Settings(s => { s.Turns = 2; s.ImagesPerRequest = 1; s.ImageSizes.Add((20, 20)); }));
        var first = source.Next();
        source.Answered(first, new RequestRecord { Tenant = "a", Success = true, Answer = "a red circle" });
        var second = source.Next();
        Assert.Equal((first.ConversationId, 1), (second.ConversationId, second.Turn));
        Assert.Equal(["user", "assistant", "user"], second.Messages.Select(m => m.Role));
        Assert.Same(first.Messages[0], second.Messages[0]);
        Assert.Equal("a red circle", second.Messages[1].Text);
        Assert.Equal(1, second.ImageCount);

        // The last turn, or a failed one, ends the conversation: the next request opens a new one.
        source.Answered(second, new RequestRecord { Tenant = "a", Success = true, Answer = "yes" });
        var third = source.Next();
        Assert.Equal(0, third.Turn);
        source.Answered(third, new RequestRecord { Tenant = "a", Success = false });
        Assert.Equal(0, source.Next().Turn);
    }

    [Fact]
    public void The_openai_body_streams_with_usage_and_ignore_eos_and_sends_images_as_data_urls()
    {
        var request = new ConversationSource(Settings(s => { s.ImagesPerRequest = 1; s.ImageSizes.Add((20, 20)); })).Next();
        using var json = System.Text.Json.JsonDocument.Parse(OpenAiStreamClient.Body(request, "m"));
        var root = json.RootElement;
        Assert.True(root.GetProperty("stream").GetBoolean());
        Assert.True(root.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.True(root.GetProperty("ignore_eos").GetBoolean());
        Assert.Equal(3, root.GetProperty("max_tokens").GetInt32());
        var content = root.GetProperty("messages")[0].GetProperty("content");
        Assert.StartsWith("data:image/png;base64,", content[0].GetProperty("image_url").GetProperty("url").GetString(), StringComparison.Ordinal);
        Assert.Equal(5, content[1].GetProperty("text").GetString()!.Split(' ').Length);
    }

    [Theory]
    [InlineData("429 rate_limit_concurrency: Too many concurrent streams.", 429, "rate_limit_concurrency")]
    [InlineData("An unexpected error occurred invoking 'Chat' on the server. HubException: 503 overloaded: busy", 503, "overloaded")]
    [InlineData("something else", null, "error")]
    public void Hub_errors_are_read_as_status_and_code(string message, int? status, string code)
    {
        Assert.Equal((status, code), HubStreamClient.ParseHubError(message));
    }

    [Theory]
    [InlineData("An unexpected error occurred invoking 'Chat' on the server. HubException: 429 tenant_over_share: Tenant 'a' is over its share; retry in 2 s.\nRetry-After: 2", 2.0)]
    [InlineData("503 over_capacity: busy\nRetry-After: 30\n", 30.0)]
    [InlineData("400 invalid_request_error: 'temperature' must be between 0 and 2.", null)]
    [InlineData("400 invalid_request_error: a prompt that says Retry-After: 5 in its text\nand more", null)]
    public void A_hub_error_s_Retry_After_line_is_read(string message, double? seconds)
    {
        Assert.Equal(seconds, HubStreamClient.ParseHubRetryAfter(message));
    }
}
