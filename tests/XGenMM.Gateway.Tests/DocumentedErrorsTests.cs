using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using XGenMM.Cluster.Abstractions;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.Images;
using XGenMM.Gateway.OpenAi;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// docs/configuration.md's "API errors" list is the contract clients code against: every status, type and code it
/// names is one the gateway really answers with, and every error the gateway answers with is in it.
/// </summary>
[Collection(GatewayTests.Name)]
public sealed partial class DocumentedErrorsTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>One documented error: the status, the type of its line and a code (or the type itself, for codeless errors).</summary>
    public sealed record Documented(int Status, string Type, string Code);

    /// <summary>
    /// Codes with no practical trigger from a test: an unreadable body needs Kestrel to fail mid-read, an empty stream
    /// a decoder that ends a generation without any chunk.
    /// </summary>
    // membership_unavailable needs the membership store to die: FaultTests in XGenMM.Cluster.Tests provoke it.
    private static readonly HashSet<string> NotProvokable = ["invalid_body", "empty_stream", "membership_unavailable"];

    public static IReadOnlyList<Documented> ReadDocumentation()
    {
        string doc = File.ReadAllText(Path.Combine(NanoGatewayFixture.RepositoryRoot(), "docs", "configuration.md"));
        int start = doc.IndexOf("## API errors", StringComparison.Ordinal);
        int end = doc.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        string section = doc[start..end];
        // Bullets of "- STATUS `type`: `code`, ..." with their continuation lines; remarks in parentheses are prose.
        var result = new List<Documented>();
        foreach (Match bullet in BulletPattern().Matches(section))
        {
            int status = int.Parse(bullet.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var tokens = TokenPattern().Matches(WithoutParentheses(bullet.Groups[2].Value)).Select(m => m.Groups[1].Value).ToList();
            string type = tokens[0];
            result.Add(new Documented(status, type, type));
            result.AddRange(tokens.Skip(1).Select(code => new Documented(status, type, code)));
        }
        return result;
    }

    private static string WithoutParentheses(string text)
    {
        var kept = new System.Text.StringBuilder();
        int depth = 0;
        foreach (char c in text)
        {
            if (c == '(') depth++;
            else if (c == ')') depth--;
            else if (depth == 0) kept.Append(c);
        }
        return kept.ToString();
    }

    [GeneratedRegex(@"^- (\d{3}) (.*?)(?=^- |^\s*$|\z)", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex BulletPattern();

    [GeneratedRegex(@"`([a-z_]+)`")]
    private static partial Regex TokenPattern();

    /// <summary>Every error the gateway can be made to answer with, as (status, type, code).</summary>
    private async Task<List<(int Status, string Type, string? Code, string Source)>> ProduceAsync()
    {
        var produced = new List<(int, string, string?, string)>();
        // Live, through HTTP: the hostile request suite, as sent by clients.
        using var http = gateway.Client();
        foreach (var hostile in HostileInputTests.Cases().Select(c => c.Data))
        {
            using var request = hostile.Request(gateway.ModelId);
            using var response = await http.SendAsync(request, Ct);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!;
            produced.Add(((int)response.StatusCode, (string)error["type"]!, (string?)error["code"], hostile.Name));
        }
        // The cluster's typed refusals and the tenant grain's quota answers, as the one chat path maps them.
        foreach (var kind in Enum.GetValues<RejectionKind>())
            Add(ChatService.ClusterError(new ClusterRejectedException(kind, "refused")), $"cluster {kind}");
        foreach (var quota in Enum.GetValues<QuotaRejection>())
            Add(ChatService.QuotaError(new AdmissionTicket(false, null, quota, 1)), $"quota {quota}");
        // Remote images: disabled, a failing server (the gateway itself answers 401 to a key-less GET), a silent server.
        using (var disabled = new RemoteImageFetcher(Options.Create(new RemoteImageOptions { Enabled = false })))
            Add(await Assert.ThrowsAsync<OpenAiException>(() => disabled.FetchAsync(new Uri("https://example.com/a.png"), "url", 1000, Ct)), "remote disabled");
        using var fetcher = new RemoteImageFetcher(Options.Create(new RemoteImageOptions { Enabled = true, AllowLoopback = true, TimeoutSeconds = 0.5 }));
        Add(await Assert.ThrowsAsync<OpenAiException>(() => fetcher.FetchAsync(new Uri(gateway.BaseAddress, "/v1/models"), "url", 1000, Ct)), "remote 401");
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var silentUrl = new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/a.png");
        Add(await Assert.ThrowsAsync<OpenAiException>(() => fetcher.FetchAsync(silentUrl, "url", 1000, Ct)), "remote silent");
        return produced;

        void Add(OpenAiException e, string source) => produced.Add((e.Status, e.Type, e.Code, source));
    }

    [Fact]
    public void The_documentation_lists_the_errors_by_status()
    {
        var documented = ReadDocumentation();
        Assert.Equal([400, 401, 403, 404, 413, 429, 503], documented.Select(d => d.Status).Distinct().Order());
        Assert.Contains(new Documented(400, "invalid_request_error", "invalid_image"), documented);
        Assert.DoesNotContain(documented, d => d.Code == "param" || d.Code == "n");
    }

    [Fact(Timeout = 120_000)]
    public async Task Every_documented_error_is_answered_with_its_status_and_every_answered_error_is_documented()
    {
        var documented = ReadDocumentation();
        var produced = await ProduceAsync();

        foreach (var d in documented.Where(d => !NotProvokable.Contains(d.Code)))
            Assert.True(produced.Any(p => p.Status == d.Status && (p.Code == d.Code || (d.Code == d.Type && p.Type == d.Type))),
                $"documented {d.Status} {d.Code} is never answered; answered: {string.Join(", ", produced.Select(p => $"{p.Status} {p.Code ?? p.Type}").Distinct())}");

        foreach (var p in produced)
        {
            var line = documented.Where(d => d.Status == p.Status).ToList();
            Assert.True(line.Count > 0, $"{p.Source}: status {p.Status} is not documented");
            Assert.True(line[0].Type == p.Type, $"{p.Source}: {p.Status} comes with type {p.Type}, documented {line[0].Type}");
            Assert.True(line.Any(d => d.Code == (p.Code ?? p.Type)), $"{p.Source}: {p.Status} {p.Code} is not documented");
        }
    }
}
