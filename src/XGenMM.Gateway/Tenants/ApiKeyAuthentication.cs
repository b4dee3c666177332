using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using XGenMM.Gateway.OpenAi;

namespace XGenMM.Gateway.Tenants;

/// <summary>
/// Tenant API keys: <c>Authorization: Bearer KEY</c> (OpenAI clients, SignalR's accessTokenFactory on negotiate) or
/// the <c>access_token</c> query parameter on the hub (browsers cannot set headers on WebSockets).
/// </summary>
public sealed class ApiKeyAuthenticationHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    TenantDirectory tenants, XGenMM.Gateway.Telemetry.GatewayMetrics metrics) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string TenantClaim = "xgenmm:tenant";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? key = null;
        string header = Request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) key = header["Bearer ".Length..].Trim();
        else if (Request.Path.StartsWithSegments("/hubs") && Request.Query.TryGetValue("access_token", out var token)) key = token.ToString();
        if (string.IsNullOrEmpty(key)) return Task.FromResult(AuthenticateResult.NoResult());
        var tenant = tenants.Find(key);
        if (tenant is null) return Task.FromResult(AuthenticateResult.Fail("The API key is not valid."));
        var identity = new ClaimsIdentity([new Claim(TenantClaim, tenant.Id), new Claim(ClaimTypes.Name, tenant.Id)], SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        bool presented = Request.Headers.Authorization.Count > 0 || Request.Query.ContainsKey("access_token");
        var error = presented
            ? OpenAiException.Unauthorized("Incorrect API key provided.", "invalid_api_key")
            : OpenAiException.Unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.", "missing_api_key");
        metrics.Reject(error);
        Response.Headers.WWWAuthenticate = "Bearer";
        await error.WriteAsync(Context).ConfigureAwait(false);
    }
}

public static class TenantClaims
{
    public static string TenantId(this ClaimsPrincipal user) =>
        user.FindFirstValue(ApiKeyAuthenticationHandler.TenantClaim) ?? throw new InvalidOperationException("The request is not authenticated.");
}
