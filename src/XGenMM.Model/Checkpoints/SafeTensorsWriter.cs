using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Checkpoints;

/// <summary>Writes safetensors files and sharded Hugging Face checkpoints (used by the trainer and by tests).</summary>
public static class SafeTensorsWriter
{
    private static readonly JsonSerializerOptions IndentedJson = new() { WriteIndented = true };

    public static string DTypeName(ScalarType type) => type switch
    {
        ScalarType.Float64 => "F64",
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Byte => "U8",
        ScalarType.Int8 => "I8",
        ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"dtype {type} cannot be stored in safetensors", nameof(type)),
    };

    /// <summary>Writes tensors (CPU, any layout) to one safetensors file, converted to <paramref name="dtype"/> when given.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, ScalarType? dtype = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var prepared = new List<(string Name, Tensor Data)>();
        try
        {
            foreach (var (name, t) in tensors)
            {
                var c = t.detach().cpu();
                if (dtype is { } d && c.dtype != d && c.is_floating_point()) c = c.to_type(d);
                prepared.Add((name, c.contiguous()));
            }
            using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
            WriteHeader(fs, prepared.Select(p => (p.Name, p.Data.dtype, p.Data.shape)), metadata);
            foreach (var (_, data) in prepared)
                if (data.NumberOfElements > 0) fs.Write(data.bytes);
        }
        finally
        {
            foreach (var (_, d) in prepared) d.Dispose();
        }
    }

    /// <summary>
    /// Writes the safetensors header (length, JSON, space padding) for tensors whose data will follow in this order,
    /// back to back. Lets a caller stream the data itself instead of holding every tensor at once.
    /// </summary>
    public static void WriteHeader(Stream stream, IEnumerable<(string Name, ScalarType DType, long[] Shape)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape) in tensors)
            {
                long bytes = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype);
                json.WriteStartObject(name);
                json.WriteString("dtype", DTypeName(dtype));
                json.WriteStartArray("shape");
                foreach (var s in shape) json.WriteNumberValue(s);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        // The format pads the header with spaces to an 8-byte boundary.
        int pad = (int)((8 - header.Length % 8) % 8);
        for (int i = 0; i < pad; i++) header.WriteByte((byte)' ');
        stream.Write(BitConverter.GetBytes(header.Length));
        header.Position = 0;
        header.CopyTo(stream);
    }

    /// <summary>Bytes per element of a dtype that safetensors can store.</summary>
    public static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        _ => throw new ArgumentException($"dtype {type} cannot be stored in safetensors", nameof(type)),
    };

    /// <summary>
    /// Saves a module tree as a Hugging Face checkpoint: shards of at most <paramref name="maxShardBytes"/> plus
    /// model.safetensors.index.json (or one model.safetensors when a single shard suffices). Transposed weights are
    /// written back in the [out, in] checkpoint layout.
    /// </summary>
    public static void SaveModel(nn.Module model, string directory, ScalarType dtype, long maxShardBytes = 2L << 30)
    {
        Directory.CreateDirectory(directory);
        var expected = CheckpointLoader.ExpectedTensors(model);
        var shards = new List<List<KeyValuePair<string, Tensor>>> { new() };
        long current = 0;
        int elementSize = dtype is ScalarType.Float16 or ScalarType.BFloat16 ? 2 : 4;
        foreach (var (name, (p, transposed)) in expected)
        {
            long bytes = p.NumberOfElements * elementSize;
            if (current > 0 && current + bytes > maxShardBytes)
            {
                shards.Add(new());
                current = 0;
            }
            shards[^1].Add(new(name, transposed ? p.t() : p));
            current += bytes;
        }
        foreach (var stale in Directory.GetFiles(directory, "model*.safetensors*")) File.Delete(stale);
        if (shards.Count == 1)
        {
            Write(Path.Combine(directory, CheckpointLoader.SingleFileName), shards[0], dtype, new Dictionary<string, string> { ["format"] = "pt" });
            return;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Write(Path.Combine(directory, file), shards[i], dtype, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var (name, t) in shards[i])
            {
                weightMap[name] = file;
                total += t.NumberOfElements * elementSize;
            }
        }
        var index = new { metadata = new { total_size = total }, weight_map = weightMap };
        File.WriteAllText(Path.Combine(directory, CheckpointLoader.IndexFileName),
            JsonSerializer.Serialize(index, IndentedJson), new UTF8Encoding(false));
    }
}
