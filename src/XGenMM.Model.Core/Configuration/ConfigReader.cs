using System.Text.Json;
using System.Text.Json.Nodes;

namespace XGenMM.Model.Configuration;

/// <summary>Typed reads from a JSON config object; every failure names the file and the key.</summary>
internal sealed class ConfigReader(string file)
{
    public JsonObject? Object(JsonObject node, string key, string prefix = "")
    {
        var value = node[key];
        if (value is null || value.GetValueKind() == JsonValueKind.Null) return null;
        return value as JsonObject ?? throw Error(prefix + key, "must be an object");
    }

    public int Int(JsonObject node, string key, int fallback, string prefix = "")
        => NullableInt(node, key, fallback, prefix) ?? throw Error(prefix + key, "must not be null");

    public int? NullableInt(JsonObject node, string key, int? fallback, string prefix = "")
    {
        var value = node[key];
        if (value is null) return fallback;
        if (value.GetValueKind() == JsonValueKind.Null) return null;
        if (value.GetValueKind() != JsonValueKind.Number || !value.AsValue().TryGetValue(out int result))
        {
            if (value.GetValueKind() == JsonValueKind.Number && value.AsValue().TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue)
                return (int)d;
            throw Error(prefix + key, $"must be an integer (got {value.ToJsonString()})");
        }
        return result;
    }

    public double Double(JsonObject node, string key, double fallback, string prefix = "")
    {
        var value = node[key];
        if (value is null) return fallback;
        if (value.GetValueKind() != JsonValueKind.Number || !value.AsValue().TryGetValue(out double result))
            throw Error(prefix + key, $"must be a number (got {value.ToJsonString()})");
        return result;
    }

    public string? String(JsonObject node, string key, string? fallback, string prefix = "")
    {
        var value = node[key];
        if (value is null || value.GetValueKind() == JsonValueKind.Null) return fallback;
        if (value.GetValueKind() != JsonValueKind.String) throw Error(prefix + key, $"must be a string (got {value.ToJsonString()})");
        return value.GetValue<string>();
    }

    public int[]? IntArray(JsonObject node, string key, string prefix = "")
    {
        var value = node[key];
        if (value is null || value.GetValueKind() == JsonValueKind.Null) return null;
        if (value is not JsonArray arr) throw Error(prefix + key, "must be an array of integers");
        try
        {
            return arr.Select(v => v!.GetValue<int>()).ToArray();
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw Error(prefix + key, "must be an array of integers");
        }
    }

    public float[]? FloatArray(JsonObject node, string key, string prefix = "")
    {
        var value = node[key];
        if (value is null || value.GetValueKind() == JsonValueKind.Null) return null;
        if (value is not JsonArray arr) throw Error(prefix + key, "must be an array of numbers");
        try
        {
            return arr.Select(v => (float)v!.GetValue<double>()).ToArray();
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw Error(prefix + key, "must be an array of numbers");
        }
    }

    public IReadOnlyList<(int Width, int Height)>? Grids(JsonObject node, string key, string prefix)
    {
        var value = node[key];
        if (value is null || value.GetValueKind() == JsonValueKind.Null) return null;
        if (value is not JsonArray arr) throw Error(prefix + key, "must be a list of [width, height] pairs");
        var grids = new List<(int, int)>();
        foreach (var item in arr)
        {
            if (item is not JsonArray pair || pair.Count != 2 || pair[0] is null || pair[1] is null
                || pair[0]!.GetValueKind() != JsonValueKind.Number || pair[1]!.GetValueKind() != JsonValueKind.Number)
                throw Error(prefix + key, "must be a list of [width, height] pairs");
            grids.Add((pair[0]!.GetValue<int>(), pair[1]!.GetValue<int>()));
        }
        return grids;
    }

    private ConfigException Error(string key, string what) => new(key, $"{file}: {key} {what}.");
}

/// <summary>A configuration value is missing, malformed, unsupported or inconsistent; <see cref="Key"/> names it.</summary>
public sealed class ConfigException : Exception
{
    public string Key { get; }
    public ConfigException(string key, string message) : base(message) => Key = key;
    public ConfigException(string key, string message, Exception inner) : base(message, inner) => Key = key;
}
