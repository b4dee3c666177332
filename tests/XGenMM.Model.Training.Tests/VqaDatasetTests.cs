using XGenMM.Model.Configuration;
using XGenMM.Model.Imaging;
using XGenMM.Model.Training.Data;

namespace XGenMM.Model.Training.Tests;

public sealed class VqaDatasetTests
{
    [Fact]
    public void The_same_seed_gives_the_same_samples_and_pixels()
    {
        var a = new VqaDataset(5).Take(20).ToList();
        var b = new VqaDataset(5).Take(20).ToList();
        Assert.Equal(a.Select(s => s.Conversation[^1].Content), b.Select(s => s.Conversation[^1].Content));
        Assert.Equal(SceneRenderer.Render(a[3].Images[0]).Pixels, SceneRenderer.Render(b[3].Images[0]).Pixels);
        var c = new VqaDataset(6).Take(20).ToList();
        Assert.NotEqual(a.Select(s => s.Conversation[0].Content + s.Answer), c.Select(s => s.Conversation[0].Content + s.Answer));
    }

    [Fact]
    public void First_lessons_have_one_large_shape_and_give_way_to_the_full_mix()
    {
        var dataset = new VqaDataset(3);
        foreach (var easy in Enumerable.Range(0, 100).Select(dataset.GetEasy))
        {
            var shape = Assert.Single(Assert.Single(easy.Images).Shapes);
            Assert.Contains(easy.QuestionType, new[] { "color", "shape" });
            Assert.Equal(easy.QuestionType == "color" ? shape.Color.Name : shape.Kind.ToString().ToLowerInvariant(), easy.Answer);
            Assert.True(shape.Radius >= 0.19 * Math.Min(easy.Images[0].Width, easy.Images[0].Height));
        }
        static object Identity(VqaSample v) => (v.Conversation[0].Content, v.Answer, v.Images[0].Width, v.Images[0].Height, v.Images[0].NoiseSeed);
        double EasyShare(int step) => Enumerable.Range(0, 400)
            .Count(slot => Identity(NanoRecipe.CurriculumSample(dataset, step, 1000, slot, 400)).Equals(Identity(dataset.GetEasy(step * 400 + slot)))) / 400.0;
        Assert.Equal(1.0, EasyShare(0));
        Assert.Equal(1.0, EasyShare(199));
        Assert.InRange(EasyShare(350), 0.45, 0.65);
        Assert.InRange(EasyShare(700), 0.05, 0.15);
        // Deterministic: a resumed run sees the same data.
        Assert.Equal(NanoRecipe.CurriculumSample(dataset, 300, 1000, 5, 8).Answer, NanoRecipe.CurriculumSample(dataset, 300, 1000, 5, 8).Answer);
    }

    [Fact]
    public void Every_question_type_and_every_anyres_grid_occurs()
    {
        var samples = new VqaDataset(7).Take(500).ToList();
        Assert.Equal(VqaDataset.QuestionTypes.Select(t => t.Type).Order(), samples.Select(s => s.QuestionType).Distinct().Order());
        var grids = samples.SelectMany(s => s.Images)
            .Select(i => AnyResPreprocessor.SelectBestResolution((i.Width, i.Height), PreprocessorConfig.DefaultAnyResGrids))
            .GroupBy(g => g).ToDictionary(g => g.Key, g => g.Count());
        Assert.All(PreprocessorConfig.DefaultAnyResGrids, g => Assert.True(grids.GetValueOrDefault(g) >= 10, $"grid {g} occurs {grids.GetValueOrDefault(g)} times"));
    }

    [Fact]
    public void Answers_agree_with_the_scenes()
    {
        foreach (var s in new VqaDataset(8).Take(300)) AssertAgrees(s);
    }

    [Fact]
    public void A_scene_group_asks_each_shape_its_colour_and_kind_about_one_shared_scene()
    {
        var dataset = new VqaDataset(11);
        var sizes = new HashSet<int>();
        for (int i = 0; i < 60; i++)
        {
            var group = dataset.GetGroup(i, 20);
            var scene = group[0].Images[0];
            Assert.All(group, s => Assert.Same(scene, Assert.Single(s.Images)));
            int n = scene.Shapes.Count;
            sizes.Add(n);
            // colour and kind of every shape, count, description, and both relations when there are two or more shapes
            Assert.Equal(2 * n + 2 + (n >= 2 ? 2 : 0), group.Count);
            Assert.Equal(n, group.Count(s => s.QuestionType == "shape"));
            Assert.Equal(scene.Shapes.Select(x => x.Kind.ToString().ToLowerInvariant()).Order(), group.Where(s => s.QuestionType == "shape").Select(s => s.Answer).Order());
            Assert.Equal(scene.Shapes.Select(x => x.Color.Name).Order(), group.Where(s => s.QuestionType == "color").Select(s => s.Answer).Order());
            Assert.All(group, AssertAgrees);
            Assert.True(dataset.GetGroup(i, 3).Count <= 3);
            Assert.Equal(group.Select(s => s.Conversation[0].Content + s.Answer), dataset.GetGroup(i, 20).Select(s => s.Conversation[0].Content + s.Answer));
        }
        Assert.Equal([1, 2, 3], sizes.Order());
        // The trainer renders a shared scene once: the examples hold the same image object.
        var examples = NanoRecipe.ToExamples(NanoRecipe.GroupedSamples(dataset, step: 2, groups: 2, questionsPerScene: 4, singles: 3));
        Assert.Equal(2 * 4 + 3, examples.Count); // a one-shape scene has exactly four questions, others more
        Assert.Same(examples[0].Images[0], examples[1].Images[0]);
    }

    [Fact]
    public void A_focused_group_adds_where_each_shape_is_and_the_relation_of_every_pair()
    {
        var dataset = new VqaDataset(12);
        for (int i = 0; i < 60; i++)
        {
            var plain = dataset.GetGroup(i, 40);
            var group = dataset.GetGroup(i, 40, focus: true);
            var scene = group[0].Images[0];
            int n = scene.Shapes.Count, pairs = n * (n - 1) / 2;
            Assert.Equal(plain.Count + 2 * n + 2 * Math.Max(0, pairs - 1), group.Count);
            Assert.Equal(n, group.Count(s => s.QuestionType == "where_lr"));
            Assert.Equal(pairs, group.Count(s => s.QuestionType == "relation_tb"));
            Assert.All(group, AssertAgrees);
        }
        // a scene's thirds: a shape in the left column, top row is "left" and "top"
        var answers = Enumerable.Range(0, 60).SelectMany(i => dataset.GetGroup(i, 40, focus: true)).Where(s => s.QuestionType.StartsWith("where", StringComparison.Ordinal))
            .Select(s => s.Answer).ToHashSet();
        Assert.Equal(["bottom", "left", "middle", "right", "top"], answers.Order());
    }

    [Fact]
    public void Pairs_of_a_steps_scenes_ask_which_image_has_a_shape_only_one_of_them_has()
    {
        var dataset = new VqaDataset(13);
        for (int step = 0; step < 20; step++)
        {
            var samples = NanoRecipe.GroupedSamples(dataset, step, groups: 4, questionsPerScene: 3, singles: 0, pairs: 5);
            var scenes = samples.Where(s => s.Images.Count == 1).Select(s => s.Images[0]).Distinct().ToList();
            var pairs = samples.Where(s => s.Images.Count == 2).ToList();
            Assert.InRange(pairs.Count, 1, 5);   // a pair is skipped only when the second scene has every shape of the first
            Assert.All(pairs, p => Assert.Equal("two_image", p.QuestionType));
            Assert.All(pairs, p => Assert.All(p.Images, image => Assert.Contains(image, scenes)));   // the same objects: encoded once
            Assert.All(pairs, AssertAgrees);
        }
        var red = new SceneShape(ShapeKind.Circle, ShapeColor.All[0], 10, 10, 5);
        var a = new Scene(100, 100, 128, false, 0, [red]);
        Assert.Throws<ArgumentException>(() => VqaDataset.WhichImage(a, a, red, first: true));
    }

    [Fact]
    public void Each_named_shape_of_a_question_is_listed_with_what_its_image_says_about_it()
    {
        var dataset = new VqaDataset(14);
        var expected = new Dictionary<string, int>
        {
            ["color"] = 1, ["shape"] = 1, ["relation_lr"] = 2, ["relation_tb"] = 2, ["two_image"] = 1, ["multi_turn"] = 1, ["count"] = 0, ["describe"] = 0,
            ["where_lr"] = 1, ["where_tb"] = 1,
        };
        var samples = dataset.Take(200).Concat(Enumerable.Range(0, 40).SelectMany(i => dataset.GetGroup(i, 40, focus: true))).ToList();
        foreach (var s in samples)
        {
            var mentions = NanoRecipe.Mentions(s);
            Assert.Equal(expected[s.QuestionType], mentions.Count);
            foreach (var m in mentions)
            {
                var shape = s.Images[m.Image].Shapes.Single(x => x.Kind == (ShapeKind)m.Kind);
                Assert.Equal(ShapeColor.All[m.Color], shape.Color);
                Assert.Equal((int)(3 * shape.X / s.Images[m.Image].Width), m.Column);
                Assert.Equal((int)(3 * shape.Y / s.Images[m.Image].Height), m.Row);
                Assert.Contains("the " + m.Text, s.Conversation[0].Content.Replace("has a ", "has the ", StringComparison.Ordinal), StringComparison.Ordinal);
            }
            if (s.QuestionType == "two_image")
                Assert.Equal(s.Answer == "the first image" ? 0 : 1, mentions[0].Image);
        }
        // "Is the A left or right of the B?" names A first
        var relation = samples.First(s => s.QuestionType == "relation_lr");
        Assert.StartsWith("<image>\nIs the " + NanoRecipe.Mentions(relation)[0].Text + " ", relation.Conversation[0].Content, StringComparison.Ordinal);
    }

    private static void AssertAgrees(VqaSample s)
    {
        var shapes = s.Images[0].Shapes;
        Assert.Equal(shapes.Count, shapes.Select(x => x.Kind).Distinct().Count());
        Assert.Equal(shapes.Count, shapes.Select(x => x.Color).Distinct().Count());
        string q = s.Conversation[^2].Content;
        switch (s.QuestionType)
        {
            case "count":
                Assert.Equal(shapes.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), s.Answer);
                break;
            case "relation_lr":
            {
                var a = shapes.Single(x => q.Contains($"Is the {x.Name} ", StringComparison.Ordinal));
                var b = shapes.Single(x => q.EndsWith($" the {x.Name}?", StringComparison.Ordinal));
                Assert.True(Math.Abs(a.X - b.X) > s.Images[0].Width / 6f, "shapes must be clearly apart");
                Assert.Equal(a.X < b.X ? "left" : "right", s.Answer);
                break;
            }
            case "relation_tb":
            {
                var a = shapes.Single(x => q.Contains($"Is the {x.Name} ", StringComparison.Ordinal));
                var b = shapes.Single(x => q.EndsWith($" the {x.Name}?", StringComparison.Ordinal));
                Assert.True(Math.Abs(a.Y - b.Y) > s.Images[0].Height / 6f, "shapes must be clearly apart");
                Assert.Equal(a.Y < b.Y ? "above" : "below", s.Answer);
                break;
            }
            case "where_lr" or "where_tb":
            {
                var a = shapes.Single(x => q.Contains($"Is the {x.Name} ", StringComparison.Ordinal));
                bool across = s.QuestionType == "where_lr";
                int third = (int)(3 * (across ? a.X / s.Images[0].Width : a.Y / s.Images[0].Height));
                string[] names = across ? ["left", "middle", "right"] : ["top", "middle", "bottom"];
                Assert.Equal(names[third], s.Answer);
                break;
            }
            case "color":
                Assert.Equal(shapes.Single(x => q.Contains(x.Kind.ToString().ToLowerInvariant(), StringComparison.Ordinal)).Color.Name, s.Answer);
                break;
            case "two_image":
            {
                string name = q[(q.IndexOf("has a ", StringComparison.Ordinal) + 6)..^1];
                int index = s.Answer == "the first image" ? 0 : 1;
                Assert.Contains(s.Images[index].Shapes, x => x.Name == name);
                Assert.DoesNotContain(s.Images[1 - index].Shapes, x => x.Name == name);
                break;
            }
        }
    }

    [Fact]
    public void A_shape_centre_is_drawn_in_its_colour()
    {
        var sample = new VqaDataset(9).Take(30).First(s => s.QuestionType == "color");
        var scene = sample.Images[0];
        var image = SceneRenderer.Render(scene);
        foreach (var shape in scene.Shapes)
        {
            int o = ((int)shape.Y * image.Width + (int)shape.X) * 3;
            Assert.InRange(image.Pixels[o], shape.Color.R - 16, shape.Color.R + 16);
            Assert.InRange(image.Pixels[o + 2], shape.Color.B - 16, shape.Color.B + 16);
        }
    }
}
