using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using XGenMM.Model.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Checkpoints;

/// <summary>Progress of a checkpoint load, in bytes of stored tensor data.</summary>
public readonly record struct CheckpointLoadProgress(long BytesLoaded, long TotalBytes, int TensorsLoaded, int TotalTensors, TimeSpan Elapsed);

/// <summary>What a load did: tensors, bytes, time, and the checkpoint tensors deliberately left unused.</summary>
public sealed record CheckpointLoadReport(int Tensors, long Bytes, TimeSpan Elapsed, IReadOnlyList<string> IgnoredTensors);

/// <summary>
/// Loads Hugging Face safetensors checkpoints (one <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c>) into a module tree whose parameter names are the checkpoint names.
/// The mapping is strict both ways: every checkpoint tensor needs a parameter (except the documented unused ones)
/// and every parameter needs a tensor of the right shape. Tensors stream in one at a time from memory-mapped files
/// and are converted to the parameter dtype, so peak memory stays near one model, not two.
/// </summary>
public static class CheckpointLoader
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";

    /// <summary>Checkpoint tensors with no home in the model: SigLIP's attention-pooling head (unused by xGen-MM).</summary>
    public static bool IsKnownUnused(string name) => name.StartsWith("vlm.vision_encoder.head.", StringComparison.Ordinal);

    /// <summary>The shard files of a checkpoint directory and which file holds each tensor.</summary>
    public static IReadOnlyDictionary<string, string> ReadWeightMap(string directory)
    {
        string indexPath = Path.Combine(directory, IndexFileName);
        if (File.Exists(indexPath))
        {
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
                foreach (var entry in doc.RootElement.GetProperty("weight_map").EnumerateObject())
                    map[entry.Name] = Path.Combine(directory, entry.Value.GetString() ?? throw new CheckpointException($"'{indexPath}': weight_map entry '{entry.Name}' is not a file name."));
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new CheckpointException($"'{indexPath}' is malformed: {ex.Message}", ex);
            }
            var missingShards = map.Values.Distinct().Where(f => !File.Exists(f)).Select(Path.GetFileName).ToList();
            if (missingShards.Count > 0)
                throw new CheckpointException($"Checkpoint '{directory}' is missing shard file(s) named in {IndexFileName}: {string.Join(", ", missingShards)}.");
            return map;
        }
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single))
        {
            using var file = new SafeTensorsFile(single);
            return file.Tensors.Keys.ToDictionary(k => k, _ => single, StringComparer.Ordinal);
        }
        throw new CheckpointException($"'{directory}' holds neither {IndexFileName} nor {SingleFileName}.");
    }

    /// <summary>Expected checkpoint name -> (parameter, whether it is stored transposed) for a module tree.</summary>
    public static Dictionary<string, (Parameter Parameter, bool Transposed)> ExpectedTensors(nn.Module model)
    {
        var transposedOwners = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, module) in model.named_modules())
            if (module is ITransposedWeight) transposedOwners.Add(name);
        var result = new Dictionary<string, (Parameter, bool)>(StringComparer.Ordinal);
        foreach (var (name, p) in model.named_parameters())
        {
            int dot = name.LastIndexOf('.');
            bool transposed = dot > 0 && name[(dot + 1)..] == "weight" && transposedOwners.Contains(name[..dot]);
            result[name] = (p, transposed);
        }
        return result;
    }

    /// <summary>The checkpoint-layout shape of a parameter ([out, in] for transposed linear weights).</summary>
    public static long[] CheckpointShape(Parameter p, bool transposed) => transposed ? p.shape.Reverse().ToArray() : p.shape;

    /// <summary>Loads all tensors of <paramref name="directory"/> into <paramref name="model"/>.</summary>
    /// <param name="skip">Checkpoint tensors the model deliberately lacks (a part it was built without): reported as
    /// ignored, never read. The strictness stays for everything else.</param>
    public static CheckpointLoadReport Load(nn.Module model, string directory, IProgress<CheckpointLoadProgress>? progress = null, Func<string, bool>? skip = null)
    {
        var stopwatch = Stopwatch.StartNew();
        var weightMap = ReadWeightMap(directory);
        var expected = ExpectedTensors(model);
        var files = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            var infos = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            foreach (var path in weightMap.Values.Distinct(StringComparer.Ordinal))
            {
                var file = new SafeTensorsFile(path);
                files[path] = file;
            }
            var problems = new List<string>();
            foreach (var (name, path) in weightMap)
            {
                if (files[path].Tensors.TryGetValue(name, out var info)) infos[name] = info;
                else problems.Add($"index lists '{name}' in {Path.GetFileName(path)}, which does not contain it");
            }
            foreach (var file in files.Values)
                foreach (var name in file.Tensors.Keys)
                    if (!weightMap.ContainsKey(name)) problems.Add($"'{name}' in {Path.GetFileName(file.Path)} is not listed in the index");

            var missing = expected.Keys.Where(n => !infos.ContainsKey(n)).Order(StringComparer.Ordinal).ToList();
            bool Unused(string n) => IsKnownUnused(n) || skip?.Invoke(n) == true;
            var ignored = infos.Keys.Where(n => !expected.ContainsKey(n) && Unused(n)).Order(StringComparer.Ordinal).ToList();
            var unexpected = infos.Keys.Where(n => !expected.ContainsKey(n) && !Unused(n)).Order(StringComparer.Ordinal).ToList();
            var misshaped = new List<string>();
            foreach (var (name, (p, transposed)) in expected)
            {
                if (!infos.TryGetValue(name, out var info)) continue;
                var want = CheckpointShape(p, transposed);
                if (!want.SequenceEqual(info.Shape))
                    misshaped.Add($"{name}: checkpoint [{string.Join(", ", info.Shape)}], model expects [{string.Join(", ", want)}]");
            }
            if (missing.Count + unexpected.Count + misshaped.Count + problems.Count > 0)
                throw new CheckpointException(DescribeMismatch(directory, missing, unexpected, misshaped, problems));

            if (expected.Values.Any(e => e.Parameter.device_type == DeviceType.META))
                return new CheckpointLoadReport(0, 0, stopwatch.Elapsed, ignored);

            long totalBytes = expected.Keys.Sum(n => infos[n].ByteLength);
            long loaded = 0;
            int count = 0;
            using (torch.no_grad())
            {
                foreach (var (name, (p, transposed)) in expected)
                {
                    var info = infos[name];
                    using (var scope = torch.NewDisposeScope())
                    {
                        var t = files[weightMap[name]].LoadTensor(name, p.dtype);
                        p.copy_(transposed ? t.t() : t);
                    }
                    loaded += info.ByteLength;
                    count++;
                    progress?.Report(new CheckpointLoadProgress(loaded, totalBytes, count, expected.Count, stopwatch.Elapsed));
                }
            }
            return new CheckpointLoadReport(count, loaded, stopwatch.Elapsed, ignored);
        }
        finally
        {
            foreach (var f in files.Values) f.Dispose();
        }
    }

    private static string DescribeMismatch(string directory, List<string> missing, List<string> unexpected, List<string> misshaped, List<string> problems)
    {
        static string Section(string title, List<string> items)
        {
            if (items.Count == 0) return "";
            const int shown = 25;
            var lines = items.Take(shown).Select(i => "  - " + i);
            string more = items.Count > shown ? $"\n  ... and {items.Count - shown} more" : "";
            return $"\n{title} ({items.Count}):\n{string.Join("\n", lines)}{more}";
        }
        return $"Checkpoint '{directory}' does not match the model built from its config.json." +
               Section("Missing tensors (the model needs them, the checkpoint lacks them)", missing) +
               Section("Unexpected tensors (in the checkpoint, no place in the model)", unexpected) +
               Section("Mis-shaped tensors", misshaped) +
               Section("Index problems", problems);
    }
}
