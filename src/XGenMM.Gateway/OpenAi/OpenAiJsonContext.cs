using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace XGenMM.Gateway.OpenAi;

[JsonSerializable(typeof(ErrorBody))]
internal sealed partial class OpenAiJsonContext : JsonSerializerContext
{
    /// <summary>Escapes only what JSON requires, so messages keep their quotes and non-ASCII text readable.</summary>
    public static readonly JavaScriptEncoder Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = Encoder };

    public static OpenAiJsonContext Relaxed { get; } = new(new JsonSerializerOptions { Encoder = Encoder });
}
