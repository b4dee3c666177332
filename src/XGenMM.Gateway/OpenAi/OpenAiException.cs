using System.Text.Json;
using System.Text.Json.Serialization;

namespace XGenMM.Gateway.OpenAi;

/// <summary>
/// An error in OpenAI's shape, <c>{"error":{"message","type","param","code"}}</c>, with its HTTP status and, for 429
/// and 503, the seconds a client should wait (Retry-After).
/// </summary>
public sealed class OpenAiException : Exception
{
    public OpenAiException(int status, string type, string message, string? code = null, string? param = null, double? retryAfterSeconds = null) : base(message)
    {
        Status = status;
        Type = type;
        Code = code;
        Param = param;
        RetryAfterSeconds = retryAfterSeconds;
    }

    public OpenAiException() : this(500, "server_error", "Internal error.") { }
    public OpenAiException(string message) : this(500, "server_error", message) { }
    public OpenAiException(string message, Exception inner) : base(message, inner) { Status = 500; Type = "server_error"; }

    public int Status { get; }
    /// <summary>Set once the refusal is counted in xgenmm_requests_rejected_total, so that a rethrow is not counted twice.</summary>
    internal bool Counted { get; set; }
    public string Type { get; } = "server_error";
    public string? Code { get; }
    public string? Param { get; }
    public double? RetryAfterSeconds { get; }

    public static OpenAiException Invalid(string message, string? param = null, string? code = null) => new(400, "invalid_request_error", message, code, param);
    public static OpenAiException Unauthorized(string message, string code) => new(401, "authentication_error", message, code);
    public static OpenAiException Forbidden(string message, string code, string? param = null) => new(403, "permission_error", message, code, param);
    public static OpenAiException NotFound(string message, string code, string? param = null) => new(404, "not_found_error", message, code, param);
    public static OpenAiException TooLarge(string message, string code, string? param = null) => new(413, "invalid_request_error", message, code, param);
    /// <summary>
    /// An image that cannot be decoded: 400 as OpenAI and vLLM answer it (clients treat it as BadRequestError), the
    /// reason kept in the code.
    /// </summary>
    public static OpenAiException InvalidImage(string message, string param = "messages") => Invalid(message, param, "invalid_image");
    public static OpenAiException RateLimited(string message, string code, double retryAfterSeconds) => new(429, "rate_limit_error", message, code, retryAfterSeconds: retryAfterSeconds);
    public static OpenAiException Unavailable(string message, string code, double retryAfterSeconds) => new(503, "server_error", message, code, retryAfterSeconds: retryAfterSeconds);

    /// <summary>A Retry-After in whole seconds, at least 1 (a client that comes back at once would be refused again).</summary>
    public static string RetryAfterHeaderValue(double seconds) =>
        Math.Max(1, (int)Math.Ceiling(seconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public ErrorBody ToBody() => new(new ErrorDetail(Message, Type, Param, Code));

    public async Task WriteAsync(HttpContext context)
    {
        context.Response.StatusCode = Status;
        if (RetryAfterSeconds is double seconds) context.Response.Headers.RetryAfter = RetryAfterHeaderValue(seconds);
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, ToBody(), OpenAiJsonContext.Relaxed.ErrorBody, context.RequestAborted).ConfigureAwait(false);
    }

    public IResult ToResult() => new ErrorResult(this);

    private sealed class ErrorResult(OpenAiException error) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext) => error.WriteAsync(httpContext);
    }
}

public sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

public sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);
