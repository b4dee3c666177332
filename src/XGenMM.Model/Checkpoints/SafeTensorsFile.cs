using Microsoft.Win32.SafeHandles;
using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace XGenMM.Model.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
}

/// <summary>
/// A safetensors file (https://github.com/huggingface/safetensors format: little-endian u64 header length, JSON
/// header, raw row-major data). Tensor bytes are read straight from the file into the destination buffer, one
/// tensor at a time, with positional reads rather than a memory map: mapped pages would count as resident memory
/// on top of the model itself, so loading would need about twice the model's size.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public SafeTensorsFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new CheckpointException($"Checkpoint file '{path}' does not exist.");
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8) throw new CheckpointException($"'{path}' is truncated: {fileLength} bytes, not even a safetensors header length.");

        byte[] lengthBytes = new byte[8];
        using (var fs = File.OpenRead(path))
        {
            fs.ReadExactly(lengthBytes);
            long headerLength = BitConverter.ToInt64(lengthBytes);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || 8 + headerLength > fileLength)
                throw new CheckpointException($"'{path}' is not a valid safetensors file (header length {headerLength}, file length {fileLength}); it may be truncated or not a safetensors file.");
            byte[] header = new byte[headerLength];
            fs.ReadExactly(header);
            _dataStart = 8 + headerLength;
            (Tensors, Metadata) = ParseHeader(path, header, fileLength - _dataStart);
        }

        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(header);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    foreach (var m in prop.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString() ?? "";
                    continue;
                }
                string dtype = prop.Value.GetProperty("dtype").GetString() ?? "";
                long[] shape = prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                long[] offsets = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                    throw new CheckpointException($"'{path}': tensor '{prop.Name}' has invalid data_offsets.");
                var info = new SafeTensorInfo(prop.Name, dtype, shape, offsets[0], offsets[1]);
                long expected = info.ElementCount * ElementSize(dtype, path, prop.Name);
                if (expected != info.ByteLength)
                    throw new CheckpointException($"'{path}': tensor '{prop.Name}' ({dtype}, shape [{string.Join(",", shape)}]) needs {expected} bytes but its offsets span {info.ByteLength}.");
                if (offsets[1] > dataLength)
                    throw new CheckpointException($"'{path}' is truncated: tensor '{prop.Name}' ends at byte {offsets[1]} of the data section, which has only {dataLength} bytes.");
                tensors[prop.Name] = info;
            }
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new CheckpointException($"'{path}' has a malformed safetensors header: {ex.Message}", ex);
        }
        return (tensors, metadata);
    }

    public static int ElementSize(string dtype, string path = "", string name = "") => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "U8" or "I8" or "BOOL" => 1,
        _ => throw new CheckpointException($"'{path}': tensor '{name}' has unsupported dtype '{dtype}'."),
    };

    public static ScalarType ToScalarType(string dtype) => dtype switch
    {
        "F64" => ScalarType.Float64,
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "U8" => ScalarType.Byte,
        "I8" => ScalarType.Int8,
        "BOOL" => ScalarType.Bool,
        _ => throw new CheckpointException($"Unsupported safetensors dtype '{dtype}'."),
    };

    public SafeTensorInfo Info(string name) =>
        Tensors.TryGetValue(name, out var info) ? info : throw new CheckpointException($"'{Path}' has no tensor named '{name}'.");

    /// <summary>Copies the raw bytes of a tensor into <paramref name="destination"/>.</summary>
    public void CopyBytes(string name, Span<byte> destination)
    {
        var info = Info(name);
        if (destination.Length != info.ByteLength) throw new ArgumentException("Destination size does not match the tensor.", nameof(destination));
        long offset = _dataStart + info.Begin;
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(_handle, destination, offset);
            if (read <= 0) throw new CheckpointException($"'{Path}' ended while reading tensor '{name}': the file is truncated.");
            destination = destination[read..];
            offset += read;
        }
    }

    /// <summary>Reads a tensor as a managed array of <typeparamref name="T"/> (the stored element type must match in size).</summary>
    public T[] ReadArray<T>(string name) where T : unmanaged
    {
        var info = Info(name);
        int size = Marshal.SizeOf<T>();
        if (ElementSize(info.DType) != size) throw new CheckpointException($"Tensor '{name}' is {info.DType}, which cannot be read as {typeof(T).Name}.");
        var result = new T[info.ElementCount];
        CopyBytes(name, MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    /// <summary>Creates a CPU tensor with the stored dtype, then converts it to <paramref name="dtype"/> (if given).</summary>
    public Tensor LoadTensor(string name, ScalarType? dtype = null)
    {
        var info = Info(name);
        var stored = ToScalarType(info.DType);
        var t = torch.empty(info.Shape, stored);
        if (info.ByteLength > 0) CopyBytes(name, t.bytes);
        if (dtype is { } target && target != stored)
        {
            var converted = t.to_type(target);
            t.Dispose();
            return converted;
        }
        return t;
    }

    public void Dispose() => _handle.Dispose();
}
