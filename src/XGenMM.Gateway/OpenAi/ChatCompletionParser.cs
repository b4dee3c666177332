using System.Text;
using System.Text.Json;
using XGenMM.Gateway.Chat;
using XGenMM.Gateway.Hosting;

namespace XGenMM.Gateway.OpenAi;

/// <summary>
/// Reads an OpenAI chat completion body field by field, so every wrong type or value is reported with the field's
/// path (<c>param</c>) instead of a generic parse failure. Unknown fields are ignored, as OpenAI clients add new ones.
/// </summary>
public static class ChatCompletionParser
{
    /// <summary>OpenAI's bound of top_logprobs (the decode engine's as well).</summary>
    public const int MaxTopLogprobs = 20;

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 32, CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false };

    public static ChatCompletionRequest Parse(ReadOnlyMemory<byte> body, RequestLimits limits)
    {
        if (body.IsEmpty) throw OpenAiException.Invalid("The request body is empty; send a JSON object.", null, "invalid_json");
        // JsonDocument checks UTF-8 only when a string is read; check it all up front for a clear 400.
        if (!System.Text.Unicode.Utf8.IsValid(body.Span)) throw OpenAiException.Invalid("The request body is not valid UTF-8.", null, "invalid_json");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw OpenAiException.Invalid($"The request body is not valid JSON: {e.Message}", null, "invalid_json");
        }
        using (document)
        {
            try
            {
                return Read(document.RootElement, limits);
            }
            catch (InvalidOperationException e)
            {
                // JsonElement throws this for a string escape that is not UTF-16 text (a lone surrogate such as
                // "\ud800"), wherever the reader meets it; every field we read goes through Text first, this catches
                // the rest (property names compared by TryGetProperty).
                throw OpenAiException.Invalid($"The request body has a string that is not valid Unicode: {e.Message}", null, "invalid_json");
            }
        }
    }

    private static ChatCompletionRequest Read(JsonElement root, RequestLimits limits)
    {
        {
            if (root.ValueKind != JsonValueKind.Object) throw OpenAiException.Invalid("The request body must be a JSON object.", null, "invalid_json");

            string model = RequiredString(root, "model");
            if (!root.TryGetProperty("messages", out var messagesElement)) throw OpenAiException.Invalid("'messages' is required.", "messages");
            if (messagesElement.ValueKind != JsonValueKind.Array) throw TypeError("messages", "an array");
            if (messagesElement.GetArrayLength() == 0) throw OpenAiException.Invalid("'messages' must contain at least one message.", "messages");
            if (messagesElement.GetArrayLength() > limits.MaxMessages)
                throw OpenAiException.Invalid($"'messages' has {messagesElement.GetArrayLength()} messages; the limit is {limits.MaxMessages}.", "messages", "too_many_messages");

            var images = new List<ImageSource>();
            var messages = new List<TurnMessage>();
            int index = 0;
            foreach (var message in messagesElement.EnumerateArray())
                messages.Add(ParseMessage(message, $"messages[{index++}]", images, limits));

            bool stream = OptionalBool(root, "stream") ?? false;
            bool includeUsage = false;
            if (root.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind != JsonValueKind.Null)
            {
                if (streamOptions.ValueKind != JsonValueKind.Object) throw TypeError("stream_options", "an object");
                if (!stream) throw OpenAiException.Invalid("'stream_options' is only allowed when 'stream' is true.", "stream_options");
                includeUsage = OptionalBool(streamOptions, "include_usage", "stream_options.include_usage") ?? false;
            }

            int? maxTokens = OptionalInt(root, "max_completion_tokens") ?? OptionalInt(root, "max_tokens");
            string maxParam = root.TryGetProperty("max_completion_tokens", out _) ? "max_completion_tokens" : "max_tokens";
            if (maxTokens is int mt && (mt < 1 || mt > limits.MaxCompletionTokens))
                throw OpenAiException.Invalid($"'{maxParam}' must be between 1 and {limits.MaxCompletionTokens}; got {mt}.", maxParam);

            double temperature = OptionalNumber(root, "temperature") ?? 1.0;
            if (temperature is < 0 or > 2) throw OpenAiException.Invalid($"'temperature' must be between 0 and 2; got {temperature}.", "temperature");
            double topP = OptionalNumber(root, "top_p") ?? 1.0;
            if (topP is <= 0 or > 1) throw OpenAiException.Invalid($"'top_p' must be greater than 0 and at most 1; got {topP}.", "top_p");
            foreach (var penalty in new[] { "presence_penalty", "frequency_penalty" })
                if (OptionalNumber(root, penalty) is double p && p is < -2 or > 2)
                    throw OpenAiException.Invalid($"'{penalty}' must be between -2 and 2; got {p}.", penalty);

            ulong? seed = null;
            if (root.TryGetProperty("seed", out var seedElement) && seedElement.ValueKind != JsonValueKind.Null)
            {
                if (seedElement.ValueKind != JsonValueKind.Number || !seedElement.TryGetInt64(out long s)) throw TypeError("seed", "an integer");
                seed = unchecked((ulong)s);
            }
            int n = OptionalInt(root, "n") ?? 1;
            if (n < 1) throw OpenAiException.Invalid($"'n' must be at least 1; got {n}.", "n");
            if (n > limits.MaxChoices) throw OpenAiException.Invalid($"'n' is {n}; the limit is {limits.MaxChoices} choices per request.", "n", "too_many_choices");
            bool logprobs = OptionalBool(root, "logprobs") ?? false;
            int? topLogprobs = OptionalInt(root, "top_logprobs");
            if (topLogprobs is int top && (top < 0 || top > MaxTopLogprobs))
                throw OpenAiException.Invalid($"'top_logprobs' must be between 0 and {MaxTopLogprobs}; got {top}.", "top_logprobs");
            if (topLogprobs is not null && !logprobs)
                throw OpenAiException.Invalid("'top_logprobs' needs 'logprobs' set to true.", "top_logprobs");
            foreach (var unsupported in new[] { "tools", "functions", "tool_choice", "function_call", "audio" })
                if (root.TryGetProperty(unsupported, out var value) && value.ValueKind != JsonValueKind.Null)
                    throw OpenAiException.Invalid($"'{unsupported}' is not supported by this model.", unsupported, "unsupported_parameter");
            if (root.TryGetProperty("response_format", out var format) && format.ValueKind != JsonValueKind.Null)
            {
                if (format.ValueKind != JsonValueKind.Object) throw TypeError("response_format", "an object");
                string type = RequiredString(format, "type", "response_format.type");
                if (type != "text") throw OpenAiException.Invalid($"response_format '{type}' is not supported; only 'text'.", "response_format", "unsupported_parameter");
            }

            var stop = new List<string>();
            if (root.TryGetProperty("stop", out var stopElement) && stopElement.ValueKind != JsonValueKind.Null)
            {
                if (stopElement.ValueKind == JsonValueKind.String) stop.Add(Text(stopElement, "stop"));
                else if (stopElement.ValueKind == JsonValueKind.Array)
                {
                    foreach (var item in stopElement.EnumerateArray())
                    {
                        if (item.ValueKind != JsonValueKind.String) throw TypeError("stop", "a string or an array of strings");
                        stop.Add(Text(item, "stop"));
                    }
                }
                else throw TypeError("stop", "a string or an array of strings");
                if (stop.Count > limits.MaxStopSequences) throw OpenAiException.Invalid($"'stop' has {stop.Count} sequences; the limit is {limits.MaxStopSequences}.", "stop");
                if (stop.Any(s => s.Length == 0 || s.Length > limits.MaxStopSequenceChars))
                    throw OpenAiException.Invalid($"Each stop sequence must be 1 to {limits.MaxStopSequenceChars} characters.", "stop");
            }
            string? user = null;
            if (root.TryGetProperty("user", out var userElement) && userElement.ValueKind != JsonValueKind.Null)
            {
                if (userElement.ValueKind != JsonValueKind.String) throw TypeError("user", "a string");
                user = Text(userElement, "user");
            }

            bool ignoreEos = OptionalBool(root, "ignore_eos") ?? false;

            return new ChatCompletionRequest
            {
                IgnoreEos = ignoreEos,
                Model = model,
                Messages = messages,
                Images = images,
                Stream = stream,
                IncludeUsage = includeUsage,
                MaxTokens = maxTokens,
                Temperature = (float)temperature,
                TopP = (float)topP,
                Seed = seed,
                Choices = n,
                TopLogprobs = logprobs ? topLogprobs ?? 0 : null,
                Stop = stop,
                User = user,
            };
        }
    }

    private static TurnMessage ParseMessage(JsonElement message, string path, List<ImageSource> images, RequestLimits limits)
    {
        if (message.ValueKind != JsonValueKind.Object) throw TypeError(path, "an object");
        string role = RequiredString(message, "role", path + ".role");
        role = role switch
        {
            "developer" => "system",
            "system" or "user" or "assistant" => role,
            _ => throw OpenAiException.Invalid($"{path}.role '{role}' is not supported; use system, developer, user or assistant.", path + ".role"),
        };
        if (!message.TryGetProperty("content", out var content)) throw OpenAiException.Invalid($"{path}.content is required.", path + ".content");
        var parts = new List<TurnPart>();
        switch (content.ValueKind)
        {
            case JsonValueKind.String:
                parts.Add(TurnPart.OfText(Text(content, path + ".content")));
                break;
            case JsonValueKind.Null when role == "assistant":
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var part in content.EnumerateArray())
                {
                    string partPath = $"{path}.content[{i++}]";
                    if (part.ValueKind != JsonValueKind.Object) throw TypeError(partPath, "an object");
                    string type = RequiredString(part, "type", partPath + ".type");
                    if (type == "text")
                    {
                        parts.Add(TurnPart.OfText(RequiredString(part, "text", partPath + ".text")));
                    }
                    else if (type == "image_url")
                    {
                        if (!part.TryGetProperty("image_url", out var imageUrl)) throw OpenAiException.Invalid($"{partPath}.image_url is required.", partPath + ".image_url");
                        string url = imageUrl.ValueKind == JsonValueKind.String ? Text(imageUrl, partPath + ".image_url")
                            : imageUrl.ValueKind == JsonValueKind.Object ? RequiredString(imageUrl, "url", partPath + ".image_url.url")
                            : throw TypeError(partPath + ".image_url", "an object with a url");
                        if (limits.RefuseImage(images.Count, partPath) is { } tooMany) throw tooMany;
                        images.Add(ParseImageUrl(url, partPath + ".image_url.url", limits));
                        parts.Add(TurnPart.OfImage(images.Count - 1));
                    }
                    else throw OpenAiException.Invalid($"{partPath}.type '{type}' is not supported; use text or image_url.", partPath + ".type");
                }
                break;
            default:
                throw TypeError(path + ".content", "a string or an array of content parts");
        }
        return new TurnMessage(role, parts);
    }

    private static ImageSource ParseImageUrl(string url, string param, RequestLimits limits)
    {
        if (url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            int comma = url.IndexOf(',', StringComparison.Ordinal);
            if (comma < 0) throw OpenAiException.Invalid("The data URL has no ',' before its data.", param, "invalid_image_url");
            string header = url[5..comma];
            if (!header.EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
                throw OpenAiException.Invalid("Image data URLs must be base64 encoded (data:image/png;base64,...).", param, "invalid_image_url");
            string mediaType = header[..^";base64".Length];
            if (mediaType.Length > 0 && !mediaType.StartsWith("image/", StringComparison.OrdinalIgnoreCase))
                throw OpenAiException.Invalid($"The data URL's media type '{mediaType}' is not an image type.", param, "invalid_image_url");
            var encoded = url.AsSpan(comma + 1);
            long maxEncoded = (limits.MaxImageBytes + 2) / 3 * 4 + 4;
            if (encoded.Length > maxEncoded)
                throw OpenAiException.TooLarge($"The image is larger than the limit of {limits.MaxImageBytes} bytes.", "image_too_large", param);
            var bytes = new byte[encoded.Length / 4 * 3 + 3];
            if (!Convert.TryFromBase64Chars(encoded, bytes, out int written))
                throw OpenAiException.Invalid("The image data URL is not valid base64.", param, "invalid_image_url");
            return new ImageSource(bytes.AsSpan(0, written).ToArray(), null, param);
        }
        if (Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            return new ImageSource(null, uri, param);
        throw OpenAiException.Invalid("image_url.url must be a data: URL (data:image/png;base64,...) or an http(s) URL.", param, "invalid_image_url");
    }

    private static string RequiredString(JsonElement obj, string name, string? path = null)
    {
        path ??= name;
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) throw OpenAiException.Invalid($"'{path}' is required.", path);
        if (value.ValueKind != JsonValueKind.String) throw TypeError(path, "a string");
        return Text(value, path);
    }

    /// <summary>
    /// A string value. JSON escapes can spell UTF-16 that is not text (a lone or reversed surrogate, "\udc00\ud800"),
    /// which the body's UTF-8 check cannot see and GetString refuses with an InvalidOperationException (a 500 before).
    /// </summary>
    private static string Text(JsonElement value, string path)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw OpenAiException.Invalid($"'{path}' is not valid Unicode text (it has an unpaired surrogate escape such as \\ud800).", path, "invalid_string");
        }
    }

    private static bool? OptionalBool(JsonElement obj, string name, string? path = null)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw TypeError(path ?? name, "a boolean"),
        };
    }

    private static int? OptionalInt(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number) throw TypeError(name, "an integer");
        if (!value.TryGetInt64(out long v)) throw TypeError(name, "an integer");
        return v > int.MaxValue ? int.MaxValue : v < int.MinValue ? int.MinValue : (int)v;
    }

    private static double? OptionalNumber(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double v) || !double.IsFinite(v)) throw TypeError(name, "a number");
        return v;
    }

    private static OpenAiException TypeError(string path, string expected) => OpenAiException.Invalid($"'{path}' must be {expected}.", path, "invalid_type");
}
