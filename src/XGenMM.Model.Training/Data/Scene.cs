namespace XGenMM.Model.Training.Data;

public enum ShapeKind { Circle, Square, Triangle, Star }

/// <summary>A named colour; the eight are far apart so they survive downscaling and background noise.</summary>
public sealed record ShapeColor(string Name, byte R, byte G, byte B)
{
    public static readonly ShapeColor[] All =
    [
        new("red", 220, 40, 40), new("green", 40, 170, 60), new("blue", 40, 80, 225), new("yellow", 240, 210, 40),
        new("purple", 150, 60, 190), new("orange", 245, 140, 30), new("white", 250, 250, 250), new("black", 20, 20, 20),
    ];
}

/// <summary>One shape: kind, colour, centre and size (half extent) in pixels.</summary>
public sealed record SceneShape(ShapeKind Kind, ShapeColor Color, float X, float Y, float Radius)
{
    public string Name => $"{Color.Name} {Kind.ToString().ToLowerInvariant()}";
}

/// <summary>An image to render: size, grey background (optionally noisy), shapes.</summary>
public sealed record Scene(int Width, int Height, byte Background, bool Noisy, int NoiseSeed, IReadOnlyList<SceneShape> Shapes);
