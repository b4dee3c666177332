using System.Text;

namespace XGenMM.LlamaCpp.Export;

/// <summary>Tensor element types of GGUF files (ggml_type ids) that this exporter writes.</summary>
internal enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
    BF16 = 30,
}

/// <summary>
/// Writes a GGUF v3 file: the header (magic, version, tensor and key counts), metadata key/values, one info record per
/// tensor (name, dims innermost first, type, offset into the data section), padding to the alignment, then every
/// tensor's bytes, each starting at a multiple of the alignment. Tensors are added with their sizes first and written
/// later from a callback, so that a multi-gigabyte model streams through without being held in memory.
/// </summary>
internal sealed class GgufWriter
{
    private const uint Version = 3;
    private const int Alignment = 32; // general.alignment's default: not written, so readers use it

    private enum ValueType : uint { UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9 }

    private readonly List<(string Key, ValueType Type, object Value)> _metadata = [];
    private readonly List<(string Name, long[] Dims, GgmlType Type, Action<Stream> Write)> _tensors = [];

    public void Add(string key, string value) => _metadata.Add((key, ValueType.String, value));
    public void Add(string key, uint value) => _metadata.Add((key, ValueType.UInt32, value));
    public void Add(string key, float value) => _metadata.Add((key, ValueType.Float32, value));
    public void Add(string key, bool value) => _metadata.Add((key, ValueType.Bool, value));

    /// <summary>Adds a tensor of logical shape <paramref name="dims"/> (innermost first, ggml's ne order: a row-major
    /// [rows, cols] matrix is {cols, rows}); <paramref name="write"/> must write exactly <see cref="Bytes"/> bytes.</summary>
    public void AddTensor(string name, long[] dims, GgmlType type, Action<Stream> write) => _tensors.Add((name, dims, type, write));

    /// <summary>Bytes of a tensor of <paramref name="dims"/> stored as <paramref name="type"/>.</summary>
    public static long Bytes(long[] dims, GgmlType type)
    {
        long elements = dims.Aggregate(1L, (a, b) => a * b);
        return type switch
        {
            GgmlType.F32 => elements * 4,
            GgmlType.F16 or GgmlType.BF16 => elements * 2,
            GgmlType.Q8_0 => elements / Q8Block.Size * Q8Block.Bytes,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
        };
    }

    public void Write(string path)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true);
        w.Write(Encoding.ASCII.GetBytes("GGUF"));
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, type, value) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            switch (value)
            {
                case string s: WriteString(w, s); break;
                case uint u: w.Write(u); break;
                case float f: w.Write(f); break;
                case bool b: w.Write((byte)(b ? 1 : 0)); break;
            }
        }
        long offset = 0;
        foreach (var (name, dims, type, _) in _tensors)
        {
            if (type == GgmlType.Q8_0 && dims[0] % Q8Block.Size != 0)
                throw new ArgumentException($"{name}: q8_0 rows must be a multiple of {Q8Block.Size} ({dims[0]}).");
            WriteString(w, name);
            w.Write((uint)dims.Length);
            foreach (long d in dims) w.Write((ulong)d);
            w.Write((uint)type);
            w.Write((ulong)offset);
            offset = Align(offset + Bytes(dims, type));
        }
        w.Flush();
        Pad(file);
        foreach (var (name, dims, type, write) in _tensors)
        {
            long before = file.Position;
            write(file);
            long written = file.Position - before;
            if (written != Bytes(dims, type)) throw new InvalidOperationException($"{name}: wrote {written} bytes, expected {Bytes(dims, type)}.");
            Pad(file);
        }
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s)
    {
        long padding = Align(s.Position) - s.Position;
        for (long i = 0; i < padding; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}

/// <summary>
/// ggml's q8_0: each run of 32 consecutive values along a row becomes one fp16 scale d = max|x| / 127 followed by the
/// 32 values as int8 round(x / d).
/// </summary>
internal static class Q8Block
{
    public const int Size = 32;
    public const int Bytes = 2 + Size;

    /// <summary>Quantizes <paramref name="values"/> (a multiple of 32 long) and writes the blocks.</summary>
    public static void Write(Stream s, ReadOnlySpan<float> values)
    {
        Span<byte> block = stackalloc byte[Bytes];
        for (int start = 0; start < values.Length; start += Size)
        {
            var x = values.Slice(start, Size);
            float amax = 0;
            foreach (float v in x) amax = Math.Max(amax, Math.Abs(v));
            float d = amax / 127f;
            float inverse = d == 0 ? 0 : 1f / d;
            BitConverter.TryWriteBytes(block, (Half)d);
            for (int i = 0; i < Size; i++) block[2 + i] = (byte)(sbyte)Math.Clamp(MathF.Round(x[i] * inverse), -127, 127);
            s.Write(block);
        }
    }

    /// <summary>The values a reader gets back from blocks written by <see cref="Write"/> (for the exporter's check).</summary>
    public static float[] Dequantize(ReadOnlySpan<byte> blocks)
    {
        var result = new float[blocks.Length / Bytes * Size];
        for (int b = 0; b < blocks.Length / Bytes; b++)
        {
            float d = (float)BitConverter.ToHalf(blocks.Slice(b * Bytes, 2));
            for (int i = 0; i < Size; i++) result[b * Size + i] = (sbyte)blocks[b * Bytes + 2 + i] * d;
        }
        return result;
    }
}
