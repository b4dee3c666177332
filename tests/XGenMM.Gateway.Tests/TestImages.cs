using SkiaSharp;

namespace XGenMM.Gateway.Tests;

/// <summary>Images made on the spot (PNG through SkiaSharp), and the fixtures' photographs.</summary>
internal static class TestImages
{
    public static byte[] Photo => File.ReadAllBytes(Fixtures.Path("fixtures", "golden", "tiny-anyres", "COCO_val2014_000000486568.jpg"));
    public static byte[] Wide => File.ReadAllBytes(Fixtures.Path("fixtures", "golden", "tiny-anyres", "synthetic_1000x300.png"));

    public static byte[] Png(int width, int height, SKColor color)
    {
        using var bitmap = new SKBitmap(width, height);
        bitmap.Erase(color);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    public static string DataUrl(byte[] bytes, string type = "image/png") => $"data:{type};base64,{Convert.ToBase64String(bytes)}";
}
