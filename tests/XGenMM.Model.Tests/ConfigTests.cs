using XGenMM.Model.Configuration;

namespace XGenMM.Model.Tests;

public sealed class ConfigTests
{
    private static string Golden() => File.ReadAllText(Path.Combine(Fixtures.GoldenTinyAnyRes, "config.json"));

    [Fact]
    public void Explicit_dimensions_override_the_real_defaults()
    {
        var c = XGenMMConfig.Parse(Golden());
        Assert.Equal(40, c.Vision.HiddenSize);
        Assert.Equal(16, c.Resampler.NumVisTokens);
        Assert.Equal(24, c.Text.HiddenSize);
        Assert.Equal(5, c.Preprocessor.AnyResGrids!.Count);
    }

    [Theory]
    [InlineData("\"hidden_act\": \"silu\"", "\"hidden_act\": \"relu\"", "text_config.hidden_act")]
    [InlineData("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 2", "text_config.num_key_value_heads")]
    [InlineData("\"lang_embedding_dim\": 24", "\"lang_embedding_dim\": 32", "vision_tokenizer_config.lang_embedding_dim")]
    [InlineData("\"hidden_size\": 40", "\"hidden_size\": \"forty\"", "vision_encoder_config.siglip_vision_config.hidden_size")]
    [InlineData("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"su\"}", "text_config.rope_scaling")]
    [InlineData("\"model_type\": \"xgenmm\"", "\"model_type\": \"llava\"", "model_type")]
    public void Unsupported_or_inconsistent_values_name_their_key(string from, string to, string key)
    {
        string json = Golden();
        Assert.Contains(from, json, StringComparison.Ordinal);
        var ex = Assert.Throws<ConfigException>(() => XGenMMConfig.Parse(json.Replace(from, to, StringComparison.Ordinal)));
        Assert.Equal(key, ex.Key);
        Assert.Contains(key, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Invalid_json_is_reported() =>
        Assert.Contains("not valid JSON", Assert.Throws<ConfigException>(() => XGenMMConfig.Parse("{ nope")).Message, StringComparison.Ordinal);

    [Fact]
    public void The_written_config_parses_back_to_the_same_model()
    {
        var c = XGenMMConfig.Parse(Golden());
        var again = XGenMMConfig.Parse(c.ToJson());
        Assert.Equal(c.Vision, again.Vision);
        Assert.Equal(c.Resampler, again.Resampler);
        Assert.Equal(c.Text, again.Text);
        Assert.Equal(c.Preprocessor.AnyResGrids, again.Preprocessor.AnyResGrids);
    }
}
