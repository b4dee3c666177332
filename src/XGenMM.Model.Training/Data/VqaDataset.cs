using XGenMM.Model.Tokenization;

namespace XGenMM.Model.Training.Data;

/// <summary>A synthetic VQA sample: its scenes (images, in placeholder order) and the conversation.</summary>
public sealed record VqaSample(IReadOnlyList<Scene> Images, IReadOnlyList<ChatMessage> Conversation, string QuestionType)
{
    public string Answer => Conversation[^1].Content;

    /// <summary>Lower-case, trimmed, no final period: the form in which answers are compared.</summary>
    public static string Normalize(string answer) => answer.Trim().TrimEnd('.').Trim().ToLowerInvariant();
}

/// <summary>
/// Deterministic synthetic visual question answering: sample i of seed s is always the same (random access, so a
/// trainer's step n reads samples n*B.. and a resumed run sees identical data). Images vary in size and aspect so
/// that every anyres grid occurs; 1 to 3 shapes of distinct (kind, colour) sit in distinct cells of a 3x3 layout.
/// </summary>
public sealed class VqaDataset(int seed)
{
    public static readonly (string Type, int Weight)[] QuestionTypes =
    [
        ("color", 15), ("shape", 15), ("count", 12), ("relation_lr", 12), ("relation_tb", 12), ("describe", 10), ("two_image", 12), ("multi_turn", 12),
    ];

    private static readonly (double Aspect, int Weight)[] Aspects = [(1 / 3.0, 1), (0.5, 2), (0.75, 2), (1.0, 3), (4 / 3.0, 2), (2.0, 2), (3.0, 1)];

    public int Seed { get; } = seed;

    public IEnumerable<VqaSample> Take(int count, int start = 0)
    {
        for (int i = start; i < start + count; i++) yield return Get(i);
    }

    public VqaSample Get(int index)
    {
        // System.Random(int) is the same sequence on every run and platform; HashCode would be randomised per process.
        var rng = new Random(unchecked((Seed * 1_000_003) ^ (index * 7_919) ^ 0x5eed));
        string type = Pick(rng, QuestionTypes);
        return type switch
        {
            "two_image" => TwoImages(rng),
            "multi_turn" => MultiTurn(rng),
            _ => Single(rng, type),
        };
    }

    /// <summary>
    /// A first lesson: one large shape, asked its colour or its kind. From scratch, a model fed only the full mix
    /// learns the answer priors and never starts to look (measured: after 750 steps it answered "green" to every colour
    /// question); on these it learns to read the vision tokens within about a hundred steps.
    /// </summary>
    public VqaSample GetEasy(int index)
    {
        var rng = new Random(unchecked((Seed * 1_000_003) ^ (index * 7_919) ^ 0xea5e));
        string type = rng.Next(2) == 0 ? "color" : "shape";
        var scene = NewScene(rng, 1, type, sizeScale: 2.0, plain: true);
        var (question, answer) = Ask(rng, scene, type);
        return new VqaSample([scene], [new ChatMessage("user", "<image>\n" + question), new ChatMessage("assistant", answer)], type);
    }

    /// <summary>
    /// Several single-image questions about one scene (its colours, kinds, count, relations, description), at most
    /// <paramref name="maxQuestions"/>, each its own one-turn conversation sharing the same <see cref="Scene"/> object:
    /// a trainer encodes the image once and learns every answer from it. The shapes sit in distinct rows and columns so
    /// that every question type is well posed.
    /// </summary>
    /// <param name="focus">Also ask, of every shape, in which third across and down it sits ("where" questions, training
    /// only: the single-image step toward a relation), and ask the relation of every pair of shapes, not of one.</param>
    public IReadOnlyList<VqaSample> GetGroup(int index, int maxQuestions, bool focus = false)
    {
        var rng = new Random(unchecked((Seed * 1_000_003) ^ (index * 7_919) ^ 0x6a0b));
        int count = rng.Next(1, 4);
        var scene = NewScene(rng, count, "relation_lr");
        var questions = new List<(string Type, string Question, string Answer)>();
        foreach (var s in scene.Shapes)
        {
            questions.Add(("color", $"What color is the {Kind(s)}?", s.Color.Name));
            questions.Add(("shape", $"What shape is the {s.Color.Name} object?", Kind(s)));
        }
        foreach (string type in count >= 2 ? ["count", "describe", "relation_lr", "relation_tb"] : new[] { "count", "describe" })
        {
            var (question, answer) = Ask(rng, scene, type);
            questions.Add((type, question, answer));
        }
        if (focus)
        {
            foreach (var s in scene.Shapes)
            {
                questions.Add(("where_lr", $"Is the {s.Name} on the left, in the middle or on the right?", Thirds(s.X, scene.Width, "left", "middle", "right")));
                questions.Add(("where_tb", $"Is the {s.Name} at the top, in the middle or at the bottom?", Thirds(s.Y, scene.Height, "top", "middle", "bottom")));
            }
            // Ask() already asked one relation of the first pair; the other pairs, each in a random order.
            for (int i = 0; i < count; i++)
                for (int j = i + 1; j < count; j++)
                {
                    if (i == 0 && j == 1) continue;
                    var (a, b) = rng.Next(2) == 0 ? (scene.Shapes[i], scene.Shapes[j]) : (scene.Shapes[j], scene.Shapes[i]);
                    questions.Add(("relation_lr", $"Is the {a.Name} left or right of the {b.Name}?", a.X < b.X ? "left" : "right"));
                    questions.Add(("relation_tb", $"Is the {a.Name} above or below the {b.Name}?", a.Y < b.Y ? "above" : "below"));
                }
        }
        return questions.OrderBy(_ => rng.Next()).Take(maxQuestions).Select(q =>
            new VqaSample([scene], [new ChatMessage("user", "<image>\n" + q.Question), new ChatMessage("assistant", q.Answer)], q.Type)).ToList();
    }

    private static VqaSample Single(Random rng, string type)
    {
        int shapes = type switch
        {
            "relation_lr" or "relation_tb" => 2,
            "count" or "describe" => rng.Next(1, 4),
            _ => rng.Next(1, 4),
        };
        var scene = NewScene(rng, shapes, type);
        var (question, answer) = Ask(rng, scene, type);
        return new VqaSample([scene], [new ChatMessage("user", "<image>\n" + question), new ChatMessage("assistant", answer)], type);
    }

    private static VqaSample MultiTurn(Random rng)
    {
        var scene = NewScene(rng, rng.Next(1, 4), "multi_turn");
        var (q1, a1) = Ask(rng, scene, rng.Next(2) == 0 ? "color" : "shape");
        var (q2, a2) = Ask(rng, scene, "count");
        return new VqaSample([scene],
        [
            new ChatMessage("user", "<image>\n" + q1), new ChatMessage("assistant", a1),
            new ChatMessage("user", q2), new ChatMessage("assistant", a2),
        ], "multi_turn");
    }

    private static VqaSample TwoImages(Random rng)
    {
        var a = NewScene(rng, rng.Next(1, 3), "two_image");
        var target = a.Shapes[rng.Next(a.Shapes.Count)];
        Scene b;
        do b = NewScene(rng, rng.Next(1, 3), "two_image");
        while (b.Shapes.Any(s => s.Kind == target.Kind && s.Color == target.Color));
        return WhichImage(a, b, target, first: rng.Next(2) == 0);
    }

    /// <summary>"Which image has a {target}?" of scene <paramref name="a"/>, which has it, and <paramref name="b"/>, which
    /// has no shape of that kind and colour, shown in that order when <paramref name="first"/>, else the other way.</summary>
    public static VqaSample WhichImage(Scene a, Scene b, SceneShape target, bool first)
    {
        if (!a.Shapes.Contains(target) || b.Shapes.Any(s => s.Kind == target.Kind && s.Color == target.Color))
            throw new ArgumentException($"The {target.Name} must be in the first scene and not in the second.", nameof(target));
        var images = first ? new[] { a, b } : new[] { b, a };
        return new VqaSample(images,
        [
            new ChatMessage("user", $"First image: <image>\nSecond image: <image>\nWhich image has a {target.Name}?"),
            new ChatMessage("assistant", first ? "the first image" : "the second image"),
        ], "two_image");
    }

    private static string Thirds(float value, int extent, string low, string middle, string high) =>
        (int)(3 * value / extent) switch { <= 0 => low, 1 => middle, _ => high };

    private static (string Question, string Answer) Ask(Random rng, Scene scene, string type)
    {
        var shapes = scene.Shapes;
        switch (type)
        {
            case "color":
            {
                var s = shapes[rng.Next(shapes.Count)];
                return ($"What color is the {Kind(s)}?", s.Color.Name);
            }
            case "shape":
            {
                var s = shapes[rng.Next(shapes.Count)];
                return ($"What shape is the {s.Color.Name} object?", Kind(s));
            }
            case "count":
                return ("How many shapes are there?", shapes.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
            case "relation_lr":
            {
                var (a, b) = rng.Next(2) == 0 ? (shapes[0], shapes[1]) : (shapes[1], shapes[0]);
                return ($"Is the {a.Name} left or right of the {b.Name}?", a.X < b.X ? "left" : "right");
            }
            case "relation_tb":
            {
                var (a, b) = rng.Next(2) == 0 ? (shapes[0], shapes[1]) : (shapes[1], shapes[0]);
                return ($"Is the {a.Name} above or below the {b.Name}?", a.Y < b.Y ? "above" : "below");
            }
            case "describe":
            {
                var names = shapes.OrderBy(s => s.X).Select(s => "a " + s.Name).ToList();
                string list = names.Count == 1 ? names[0] : string.Join(", ", names.Take(names.Count - 1)) + " and " + names[^1];
                return ("Describe the image in one sentence.", char.ToUpperInvariant(list[0]) + list[1..] + ".");
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unknown question type");
        }
    }

    private static string Kind(SceneShape s) => s.Kind.ToString().ToLowerInvariant();

    /// <summary>A scene with distinct shape kinds AND distinct colours, so every "the {kind}" / "the {colour} object" is unique.</summary>
    private static Scene NewScene(Random rng, int count, string type, double sizeScale = 1.0, bool plain = false)
    {
        double aspect = Pick(rng, Aspects);
        int shortSide = rng.Next(300, 801);
        int w = aspect >= 1 ? (int)Math.Min(1400, shortSide * aspect) : shortSide;
        int h = aspect >= 1 ? shortSide : (int)Math.Min(1400, shortSide / aspect);
        var kinds = Enum.GetValues<ShapeKind>().OrderBy(_ => rng.Next()).Take(count).ToArray();
        var colors = ShapeColor.All.OrderBy(_ => rng.Next()).Take(count).ToArray();
        // Cells of a 3x3 layout; relation questions need the two shapes in different columns and rows, descriptions
        // (listed left to right) shapes in different columns.
        var cells = Enumerable.Range(0, 9).OrderBy(_ => rng.Next()).ToList();
        var chosen = new List<int>();
        foreach (int c in cells)
        {
            if (chosen.Count == count) break;
            if (type is "relation_lr" or "relation_tb" && chosen.Any(o => o % 3 == c % 3 || o / 3 == c / 3)) continue;
            if (type == "describe" && chosen.Any(o => o % 3 == c % 3)) continue; // left-to-right order must be clear
            chosen.Add(c);
        }
        float minSide = Math.Min(w, h);
        var shapes = new List<SceneShape>();
        for (int i = 0; i < count; i++)
        {
            int col = chosen[i] % 3, row = chosen[i] / 3;
            float x = (float)((col + 0.5 + (rng.NextDouble() - 0.5) * 0.15) / 3 * w);
            float y = (float)((row + 0.5 + (rng.NextDouble() - 0.5) * 0.15) / 3 * h);
            float r = (float)(minSide * (0.10 + rng.NextDouble() * 0.03) * sizeScale);
            shapes.Add(new SceneShape(kinds[i], colors[i], x, y, r));
        }
        byte background = (byte)rng.Next(105, 170);
        bool noisy = rng.Next(2) == 0;
        return plain ? new Scene(w, h, 128, false, 0, shapes) : new Scene(w, h, background, noisy, rng.Next(), shapes);
    }

    private static T Pick<T>(Random rng, (T Value, int Weight)[] options)
    {
        int total = options.Sum(o => o.Weight);
        int roll = rng.Next(total);
        foreach (var (value, weight) in options)
        {
            if (roll < weight) return value;
            roll -= weight;
        }
        return options[^1].Value;
    }
}
