using XGenMM.Model.Checkpoints;
using XGenMM.Model.Configuration;

namespace XGenMM.Model.Hub.Tests;

/// <summary>
/// A tiny xGen-MM checkpoint in the Hugging Face repository layout, generated once per test run: the golden tiny
/// configuration with fresh weights saved in 2 MB shards with their index, the tokenizer and preprocessor files, and
/// the repository files the loader does not read (README, remote code, sample images in a folder).
/// </summary>
internal static class TestCheckpoint
{
    private static readonly Lazy<Dictionary<string, byte[]>> Generated = new(Generate);

    public const string Repo = "xgenmm-tests/tiny-xgenmm";

    /// <summary>The repository's files by path (a fresh copy of the dictionary; the bytes are shared, do not change them).</summary>
    public static Dictionary<string, byte[]> Files() => new(Generated.Value, StringComparer.Ordinal);

    /// <summary>What the default Model:HuggingFace:Files selects: the top-level json, safetensors and jinja files.</summary>
    public static IEnumerable<string> LoaderFiles(IReadOnlyDictionary<string, byte[]> files) =>
        files.Keys.Where(k => !k.Contains('/', StringComparison.Ordinal) && (k.EndsWith(".json", StringComparison.Ordinal) || k.EndsWith(".safetensors", StringComparison.Ordinal)));

    private static Dictionary<string, byte[]> Generate()
    {
        string dir = Directory.CreateTempSubdirectory("xgenmm-hub-ckpt-").FullName;
        try
        {
            string golden = Fixtures.GoldenTinyAnyRes;
            using (var model = new XGenMMModel(XGenMMConfig.FromDirectory(golden)))
                SafeTensorsWriter.SaveModel(model, dir, TorchSharp.torch.ScalarType.Float32, maxShardBytes: 2 << 20);
            foreach (var name in new[] { "config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json", "README.md" })
                File.Copy(Path.Combine(golden, name), Path.Combine(dir, name));
            var files = Directory.GetFiles(dir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal);
            files["modeling_xgenmm.py"] = "# remote code the C# loader never runs\n"u8.ToArray();
            files["test_samples/sample.png"] = File.ReadAllBytes(Path.Combine(golden, "synthetic_1000x300.png"));
            return files;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
