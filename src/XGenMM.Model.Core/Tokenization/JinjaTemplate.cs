using System.Globalization;
using System.Text;

namespace XGenMM.Model.Tokenization;

/// <summary>A chat template that cannot be compiled (unsupported syntax) or that refused to render (raise_exception).</summary>
public sealed class ChatTemplateException(string message) : Exception(message)
{
    public ChatTemplateException() : this("The chat template failed.") { }
    public ChatTemplateException(string message, Exception inner) : this(message + " " + inner.Message) { }
}

/// <summary>
/// The subset of Jinja that Hugging Face chat templates use (those of xGen-MM and Phi-3 among them), compiled once and
/// rendered per request. Everything is checked at compile time (tags, filters, functions, methods), so a template this
/// interpreter cannot render fails when the model is loaded, not when a request arrives.
/// </summary>
/// <remarks>
/// Supported: text with <c>{{ }}</c>, <c>{% %}</c>, <c>{# #}</c> and <c>-</c> whitespace control; the trim_blocks and
/// lstrip_blocks behaviour Hugging Face renders chat templates with; <c>for</c> (with <c>loop.index</c>, <c>index0</c>,
/// <c>first</c>, <c>last</c>, <c>length</c>, <c>revindex</c>, <c>revindex0</c>), <c>if/elif/else</c>, <c>set</c>;
/// string, number, boolean, none and list literals; attribute, index and slice access; <c>+ - * / // % ~</c>;
/// comparisons, <c>in</c>, <c>not in</c>, <c>is [not] defined/none/string/number/mapping/iterable/sequence</c>;
/// <c>and/or/not</c>; inline <c>if ... else</c>; the filters below; <c>raise_exception(message)</c>; string methods
/// <c>strip lstrip rstrip upper lower title startswith endswith</c>.
/// </remarks>
public sealed class JinjaTemplate
{
    private static readonly HashSet<string> Filters = ["trim", "length", "count", "upper", "lower", "title", "capitalize", "string", "int", "first", "last", "default", "join", "list"];
    private static readonly HashSet<string> Methods = ["strip", "lstrip", "rstrip", "upper", "lower", "title", "startswith", "endswith"];
    private static readonly HashSet<string> Tests = ["defined", "undefined", "none", "string", "number", "mapping", "iterable", "sequence", "true", "false", "even", "odd"];

    private readonly List<Node> _body;

    private JinjaTemplate(List<Node> body) => _body = body;

    /// <summary>Compiles <paramref name="source"/>; any syntax outside the supported subset throws here.</summary>
    public static JinjaTemplate Compile(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var parser = new Parser(Lexer.Tokenize(source));
        var body = parser.ParseBody(out string? end);
        if (end is not null) throw new ChatTemplateException($"Unexpected '{{% {end} %}}' with no block to close.");
        return new JinjaTemplate(body);
    }

    /// <summary>
    /// Renders with the given variables: strings, booleans, numbers, null, lists (<see cref="IReadOnlyList{T}"/> of
    /// object) and mappings (<see cref="IReadOnlyDictionary{TKey, TValue}"/> of string to object).
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        var scope = new Scope(variables);
        var output = new StringBuilder();
        Execute(_body, scope, output);
        return output.ToString();
    }

    // ---- Values ---------------------------------------------------------------------------------------------------

    /// <summary>A name or member that does not exist: falsy, renders as nothing (Jinja's default Undefined).</summary>
    private sealed class Undefined
    {
        public static readonly Undefined Value = new();
        public override string ToString() => "";
    }

    private sealed class Loop(int index0, int length) : Dictionary<string, object?>(StringComparer.Ordinal)
    {
        public Loop Init()
        {
            this["index0"] = (long)index0;
            this["index"] = (long)index0 + 1;
            this["first"] = index0 == 0;
            this["last"] = index0 == length - 1;
            this["length"] = (long)length;
            this["revindex"] = (long)(length - index0);
            this["revindex0"] = (long)(length - index0 - 1);
            return this;
        }
    }

    private sealed class Scope(IReadOnlyDictionary<string, object?> globals)
    {
        private readonly List<Dictionary<string, object?>> _frames = [new(StringComparer.Ordinal)];

        public object? Get(string name)
        {
            for (int i = _frames.Count - 1; i >= 0; i--)
                if (_frames[i].TryGetValue(name, out var v)) return v;
            return globals.TryGetValue(name, out var g) ? g : Undefined.Value;
        }

        public void Set(string name, object? value) => _frames[^1][name] = value;
        public void Push() => _frames.Add(new(StringComparer.Ordinal));
        public void Pop() => _frames.RemoveAt(_frames.Count - 1);
    }

    private static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        string s => s.Length > 0,
        long l => l != 0,
        double d => d != 0,
        System.Collections.ICollection c => c.Count > 0,
        _ => true,
    };

    private static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        int i => i.ToString(CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IReadOnlyList<object?> list => "[" + string.Join(", ", list.Select(Repr)) + "]",
        _ => v.ToString() ?? "",
    };

    private static string Repr(object? v) => v is string s ? "'" + s.Replace("'", "\\'", StringComparison.Ordinal) + "'" : Str(v);

    private static object? Normalize(object? v) => v switch
    {
        int i => (long)i,
        float f => (double)f,
        _ => v,
    };

    // ---- Execution ------------------------------------------------------------------------------------------------

    private static void Execute(List<Node> nodes, Scope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            switch (node)
            {
                case TextNode t:
                    output.Append(t.Text);
                    break;
                case OutputNode o:
                    output.Append(Str(o.Expression.Evaluate(scope)));
                    break;
                case SetNode s:
                    scope.Set(s.Name, s.Value.Evaluate(scope));
                    break;
                case IfNode i:
                    foreach (var (condition, body) in i.Branches)
                    {
                        if (condition is null || Truthy(condition.Evaluate(scope)))
                        {
                            Execute(body, scope, output);
                            break;
                        }
                    }
                    break;
                case ForNode f:
                    var items = Iterate(f.Source.Evaluate(scope)).ToList();
                    if (items.Count == 0)
                    {
                        Execute(f.Else, scope, output);
                        break;
                    }
                    for (int k = 0; k < items.Count; k++)
                    {
                        scope.Push();
                        scope.Set(f.Variable, items[k]);
                        scope.Set("loop", new Loop(k, items.Count).Init());
                        Execute(f.Body, scope, output);
                        scope.Pop();
                    }
                    break;
            }
        }
    }

    private static IEnumerable<object?> Iterate(object? v) => v switch
    {
        null or Undefined => [],
        string s => s.Select(c => (object?)c.ToString()),
        IReadOnlyList<object?> list => list,
        IReadOnlyDictionary<string, object?> map => map.Keys,
        _ => throw new ChatTemplateException($"Cannot loop over a {v.GetType().Name}."),
    };

    // ---- Nodes ----------------------------------------------------------------------------------------------------

    private abstract record Node;
    private sealed record TextNode(string Text) : Node;
    private sealed record OutputNode(Expr Expression) : Node;
    private sealed record SetNode(string Name, Expr Value) : Node;
    private sealed record IfNode(List<(Expr? Condition, List<Node> Body)> Branches) : Node;
    private sealed record ForNode(string Variable, Expr Source, List<Node> Body, List<Node> Else) : Node;

    private abstract record Expr
    {
        public abstract object? Evaluate(Scope scope);
    }

    private sealed record Literal(object? Value) : Expr
    {
        public override object? Evaluate(Scope scope) => Value;
    }

    private sealed record ListExpr(List<Expr> Items) : Expr
    {
        public override object? Evaluate(Scope scope) => Items.Select(i => i.Evaluate(scope)).ToList();
    }

    private sealed record Name(string Id) : Expr
    {
        public override object? Evaluate(Scope scope) => Normalize(scope.Get(Id));
    }

    private sealed record Member(Expr Target, Expr Key) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            var target = Target.Evaluate(scope);
            var key = Key.Evaluate(scope);
            return Normalize(target switch
            {
                IReadOnlyDictionary<string, object?> map when key is string k => map.TryGetValue(k, out var v) ? v : Undefined.Value,
                IReadOnlyList<object?> list when key is long i => i < 0 ? (i + list.Count >= 0 ? list[(int)(i + list.Count)] : Undefined.Value)
                    : i < list.Count ? list[(int)i] : Undefined.Value,
                string s when key is long i => i < 0 ? (i + s.Length >= 0 ? s[(int)(i + s.Length)].ToString() : Undefined.Value)
                    : i < s.Length ? s[(int)i].ToString() : Undefined.Value,
                null or Undefined => throw new ChatTemplateException($"Cannot read '{Str(key)}' of an undefined value."),
                _ => Undefined.Value,
            });
        }
    }

    private sealed record Slice(Expr Target, Expr? Start, Expr? Stop) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            var target = Target.Evaluate(scope);
            int length = target switch
            {
                IReadOnlyList<object?> list => list.Count,
                string s => s.Length,
                _ => throw new ChatTemplateException("Only lists and strings can be sliced."),
            };
            int Bound(Expr? e, int fallback)
            {
                if (e is null) return fallback;
                long v = e.Evaluate(scope) is long l ? l : throw new ChatTemplateException("Slice bounds must be integers.");
                if (v < 0) v += length;
                return (int)Math.Clamp(v, 0, length);
            }
            int start = Bound(Start, 0), stop = Math.Max(start, Bound(Stop, length));
            return target is string str ? str[start..stop] : ((IReadOnlyList<object?>)target).Skip(start).Take(stop - start).ToList();
        }
    }

    private sealed record Unary(string Op, Expr Operand) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            var v = Operand.Evaluate(scope);
            return Op switch
            {
                "not" => !Truthy(v),
                "-" => v switch { long l => (object)-l, double d => -d, _ => throw new ChatTemplateException("'-' needs a number.") },
                _ => throw new InvalidOperationException(Op),
            };
        }
    }

    private sealed record Binary(string Op, Expr Left, Expr Right) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            if (Op == "and") { var l = Left.Evaluate(scope); return Truthy(l) ? Right.Evaluate(scope) : l; }
            if (Op == "or") { var l = Left.Evaluate(scope); return Truthy(l) ? l : Right.Evaluate(scope); }
            var a = Left.Evaluate(scope);
            var b = Right.Evaluate(scope);
            return Op switch
            {
                "~" => Str(a) + Str(b),
                "+" => (a, b) switch
                {
                    (string x, string y) => x + y,
                    (IReadOnlyList<object?> x, IReadOnlyList<object?> y) => x.Concat(y).ToList(),
                    _ => Arithmetic(a, b, (x, y) => x + y, (x, y) => x + y),
                },
                "-" => Arithmetic(a, b, (x, y) => x - y, (x, y) => x - y),
                "*" => a is string s && b is long n ? string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n))) : Arithmetic(a, b, (x, y) => x * y, (x, y) => x * y),
                "/" => ToDouble(a) / ToDouble(b),
                "//" => Arithmetic(a, b, (x, y) => y == 0 ? throw new ChatTemplateException("Division by zero.") : (long)Math.Floor((double)x / y), (x, y) => Math.Floor(x / y)),
                "%" => a is string ? throw new ChatTemplateException("String formatting with '%' is not supported.")
                    : Arithmetic(a, b, (x, y) => y == 0 ? throw new ChatTemplateException("Modulo by zero.") : ((x % y) + y) % y, (x, y) => x - y * Math.Floor(x / y)),
                "==" => Equal(a, b),
                "!=" => !Equal(a, b),
                "<" => Compare(a, b) < 0,
                "<=" => Compare(a, b) <= 0,
                ">" => Compare(a, b) > 0,
                ">=" => Compare(a, b) >= 0,
                "in" => Contains(b, a),
                "not in" => !Contains(b, a),
                _ => throw new InvalidOperationException(Op),
            };
        }

        private static double ToDouble(object? v) => v switch
        {
            long l => l,
            double d => d,
            _ => throw new ChatTemplateException($"Expected a number, got {Repr(v)}."),
        };

        private static object Arithmetic(object? a, object? b, Func<long, long, long> integer, Func<double, double, double> real) =>
            a is long x && b is long y ? integer(x, y) : real(ToDouble(a), ToDouble(b));

        private static bool Equal(object? a, object? b) => (a, b) switch
        {
            (Undefined, Undefined) => true,
            (long x, double y) => x == y,
            (double x, long y) => x == y,
            (IReadOnlyList<object?> x, IReadOnlyList<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equal(p.First, p.Second)),
            _ => Equals(a, b),
        };

        private static int Compare(object? a, object? b) => (a, b) switch
        {
            (string x, string y) => string.CompareOrdinal(x, y),
            _ => ToDouble(a).CompareTo(ToDouble(b)),
        };

        private static bool Contains(object? container, object? item) => container switch
        {
            string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new ChatTemplateException("'in' a string needs a string."),
            IReadOnlyList<object?> list => list.Any(x => Equal(x, item)),
            IReadOnlyDictionary<string, object?> map => item is string k && map.ContainsKey(k),
            _ => throw new ChatTemplateException($"Cannot test membership in {Repr(container)}."),
        };
    }

    private sealed record Conditional(Expr Condition, Expr Then, Expr? Else) : Expr
    {
        public override object? Evaluate(Scope scope) =>
            Truthy(Condition.Evaluate(scope)) ? Then.Evaluate(scope) : Else?.Evaluate(scope) ?? Undefined.Value;
    }

    private sealed record Test(Expr Operand, string Name, bool Negated) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            var v = Operand.Evaluate(scope);
            bool result = Name switch
            {
                "defined" => v is not Undefined,
                "undefined" => v is Undefined,
                "none" => v is null,
                "string" => v is string,
                "number" => v is long or double,
                "mapping" => v is IReadOnlyDictionary<string, object?>,
                "iterable" => v is string or IReadOnlyList<object?> or IReadOnlyDictionary<string, object?>,
                "sequence" => v is string or IReadOnlyList<object?>,
                "true" => v is true,
                "false" => v is false,
                "even" => v is long e && e % 2 == 0,
                "odd" => v is long o && o % 2 != 0,
                _ => throw new InvalidOperationException(Name),
            };
            return result != Negated;
        }
    }

    private sealed record Filter(Expr Operand, string Name, List<Expr> Arguments) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            var v = Operand.Evaluate(scope);
            var args = Arguments.Select(a => a.Evaluate(scope)).ToList();
            return Name switch
            {
                "trim" => Str(v).Trim(),
                "length" or "count" => v switch
                {
                    string s => (long)s.Length,
                    System.Collections.ICollection c => (long)c.Count,
                    _ => throw new ChatTemplateException($"{Repr(v)} has no length."),
                },
                "upper" => Str(v).ToUpperInvariant(),
                "lower" => Str(v).ToLowerInvariant(),
                "title" => CultureInfo.InvariantCulture.TextInfo.ToTitleCase(Str(v).ToLowerInvariant()),
                "capitalize" => Str(v) is { Length: > 0 } c ? char.ToUpperInvariant(c[0]) + c[1..].ToLowerInvariant() : "",
                "string" => Str(v),
                "int" => v switch
                {
                    long l => l,
                    double d => (long)d,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long p) => p,
                    _ => 0L,
                },
                "first" => Iterate(v).FirstOrDefault(Undefined.Value),
                "last" => Iterate(v).LastOrDefault(Undefined.Value),
                "default" => v is Undefined || (args.Count > 1 && Truthy(args[1]) && !Truthy(v)) ? (args.Count > 0 ? args[0] : "") : v,
                "join" => string.Join(args.Count > 0 ? Str(args[0]) : "", Iterate(v).Select(Str)),
                "list" => Iterate(v).ToList(),
                _ => throw new InvalidOperationException(Name),
            };
        }
    }

    private sealed record MethodCall(Expr Target, string Method, List<Expr> Arguments) : Expr
    {
        public override object? Evaluate(Scope scope)
        {
            var target = Target.Evaluate(scope);
            if (target is not string s) throw new ChatTemplateException($"'.{Method}()' is a string method; the value is {Repr(target)}.");
            var args = Arguments.Select(a => Str(a.Evaluate(scope))).ToList();
            string? chars = args.Count > 0 ? args[0] : null;
            return Method switch
            {
                "strip" => chars is null ? s.Trim() : s.Trim(chars.ToCharArray()),
                "lstrip" => chars is null ? s.TrimStart() : s.TrimStart(chars.ToCharArray()),
                "rstrip" => chars is null ? s.TrimEnd() : s.TrimEnd(chars.ToCharArray()),
                "upper" => s.ToUpperInvariant(),
                "lower" => s.ToLowerInvariant(),
                "title" => CultureInfo.InvariantCulture.TextInfo.ToTitleCase(s.ToLowerInvariant()),
                "startswith" => s.StartsWith(chars ?? "", StringComparison.Ordinal),
                "endswith" => s.EndsWith(chars ?? "", StringComparison.Ordinal),
                _ => throw new InvalidOperationException(Method),
            };
        }
    }

    private sealed record RaiseException(Expr Message) : Expr
    {
        public override object? Evaluate(Scope scope) => throw new ChatTemplateException(Str(Message.Evaluate(scope)));
    }

    // ---- Lexer ----------------------------------------------------------------------------------------------------

    private enum Kind { Text, Output, Statement, Name, String, Integer, Float, Operator, End }

    private sealed record Token(Kind Kind, string Value, int Position);

    private static class Lexer
    {
        /// <summary>Splits the source into text and tag tokens, applying whitespace control, trim_blocks and lstrip_blocks.</summary>
        public static List<Token> Tokenize(string source)
        {
            var tokens = new List<Token>();
            int pos = 0;
            bool trimNextLeading = false, trimNextNewline = false;
            while (pos < source.Length)
            {
                int open = FindOpen(source, pos);
                string text = source[pos..(open < 0 ? source.Length : open)];
                if (trimNextLeading) text = text.TrimStart();
                else if (trimNextNewline && text.StartsWith('\n')) text = text[1..];
                else if (trimNextNewline && text.StartsWith("\r\n", StringComparison.Ordinal)) text = text[2..];
                trimNextLeading = trimNextNewline = false;
                if (open < 0)
                {
                    if (text.Length > 0) tokens.Add(new Token(Kind.Text, text, pos));
                    break;
                }
                char kind = source[open + 1];
                bool stripBefore = open + 2 < source.Length && source[open + 2] == '-';
                bool keepBefore = open + 2 < source.Length && source[open + 2] == '+';
                if (stripBefore) text = text.TrimEnd();
                else if (kind != '{' && !keepBefore)
                {
                    // lstrip_blocks: a block tag alone on its line takes the indentation before it.
                    int lineStart = text.LastIndexOf('\n') + 1;
                    if (text.AsSpan(lineStart).IsWhiteSpace()) text = text[..lineStart];
                }
                if (text.Length > 0) tokens.Add(new Token(Kind.Text, text, pos));

                string close = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
                int inner = open + 2 + (stripBefore || keepBefore ? 1 : 0);
                int end = kind == '#' ? source.IndexOf(close, inner, StringComparison.Ordinal) : FindClose(source, inner, close);
                if (end < 0) throw new ChatTemplateException($"Unclosed '{source.Substring(open, 2)}' at position {open}.");
                bool stripAfter = end > inner && source[end - 1] == '-';
                string body = source[inner..(stripAfter ? end - 1 : end)];
                pos = end + 2;
                trimNextLeading = stripAfter;
                trimNextNewline = !stripAfter && kind != '{'; // trim_blocks
                if (kind == '#') continue;
                tokens.Add(new Token(kind == '{' ? Kind.Output : Kind.Statement, body, open));
            }
            return tokens;
        }

        private static int FindOpen(string s, int from)
        {
            for (int i = from; i < s.Length - 1; i++)
                if (s[i] == '{' && s[i + 1] is '{' or '%' or '#') return i;
            return -1;
        }

        /// <summary>The close delimiter outside string literals.</summary>
        private static int FindClose(string s, int from, string close)
        {
            char quote = '\0';
            for (int i = from; i < s.Length - 1; i++)
            {
                char c = s[i];
                if (quote != '\0')
                {
                    if (c == '\\') i++;
                    else if (c == quote) quote = '\0';
                }
                else if (c is '\'' or '"') quote = c;
                else if (c == close[0] && s[i + 1] == close[1]) return i;
            }
            return -1;
        }

        private static readonly string[] Operators = ["//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", ".", ",", ":", "|", "{", "}"];

        /// <summary>Splits the inside of one tag into names, literals and operators.</summary>
        public static List<Token> Expression(string body, int position)
        {
            var tokens = new List<Token>();
            int i = 0;
            while (i < body.Length)
            {
                char c = body[i];
                if (char.IsWhiteSpace(c)) { i++; continue; }
                if (char.IsLetter(c) || c == '_')
                {
                    int start = i;
                    while (i < body.Length && (char.IsLetterOrDigit(body[i]) || body[i] == '_')) i++;
                    tokens.Add(new Token(Kind.Name, body[start..i], position + start));
                    continue;
                }
                if (char.IsDigit(c))
                {
                    int start = i;
                    while (i < body.Length && char.IsDigit(body[i])) i++;
                    bool real = i + 1 < body.Length && body[i] == '.' && char.IsDigit(body[i + 1]);
                    if (real)
                    {
                        i++;
                        while (i < body.Length && char.IsDigit(body[i])) i++;
                    }
                    tokens.Add(new Token(real ? Kind.Float : Kind.Integer, body[start..i], position + start));
                    continue;
                }
                if (c is '\'' or '"')
                {
                    var text = new StringBuilder();
                    int start = i++;
                    while (true)
                    {
                        if (i >= body.Length) throw new ChatTemplateException($"Unterminated string at position {position + start}.");
                        char d = body[i++];
                        if (d == c) break;
                        if (d != '\\') { text.Append(d); continue; }
                        if (i >= body.Length) throw new ChatTemplateException($"Unterminated string at position {position + start}.");
                        char e = body[i++];
                        text.Append(e switch { 'n' => '\n', 't' => '\t', 'r' => '\r', '\\' => '\\', '\'' => '\'', '"' => '"', _ => throw new ChatTemplateException($"Unsupported escape '\\{e}' at position {position + i - 2}.") });
                    }
                    tokens.Add(new Token(Kind.String, text.ToString(), position + start));
                    continue;
                }
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(body, i, o, 0, o.Length) == 0);
                if (op is null) throw new ChatTemplateException($"Unexpected character '{c}' at position {position + i}.");
                tokens.Add(new Token(Kind.Operator, op, position + i));
                i += op.Length;
            }
            tokens.Add(new Token(Kind.End, "", position + body.Length));
            return tokens;
        }
    }

    // ---- Parser ---------------------------------------------------------------------------------------------------

    private sealed class Parser(List<Token> tokens)
    {
        private int _index;

        /// <summary>Nodes up to a closing or continuing tag (endif, elif, else, endfor), whose name is returned in <paramref name="end"/>.</summary>
        public List<Node> ParseBody(out string? end) => ParseBody(out end, out _);

        private List<Node> ParseBody(out string? end, out ExpressionParser? rest)
        {
            var nodes = new List<Node>();
            while (_index < tokens.Count)
            {
                var token = tokens[_index++];
                switch (token.Kind)
                {
                    case Kind.Text:
                        nodes.Add(new TextNode(token.Value));
                        break;
                    case Kind.Output:
                        var output = new ExpressionParser(Lexer.Expression(token.Value, token.Position));
                        nodes.Add(new OutputNode(output.ParseExpression()));
                        output.ExpectEnd();
                        break;
                    case Kind.Statement:
                        var statement = new ExpressionParser(Lexer.Expression(token.Value, token.Position));
                        string keyword = statement.ExpectName();
                        switch (keyword)
                        {
                            case "if":
                                nodes.Add(ParseIf(statement));
                                break;
                            case "for":
                                nodes.Add(ParseFor(statement));
                                break;
                            case "set":
                                string name = statement.ExpectName();
                                statement.Expect("=");
                                nodes.Add(new SetNode(name, statement.ParseExpression()));
                                statement.ExpectEnd();
                                break;
                            case "elif" or "else" or "endif" or "endfor":
                                end = keyword;
                                rest = statement;
                                return nodes;
                            default:
                                throw new ChatTemplateException($"Unsupported tag '{{% {keyword} %}}' at position {token.Position}; this server renders for, if/elif/else and set.");
                        }
                        break;
                }
            }
            end = null;
            rest = null;
            return nodes;
        }

        private IfNode ParseIf(ExpressionParser head)
        {
            var branches = new List<(Expr?, List<Node>)>();
            Expr? condition = head.ParseExpression();
            head.ExpectEnd();
            while (true)
            {
                var body = ParseBody(out string? end, out var rest);
                branches.Add((condition, body));
                switch (end)
                {
                    case "elif":
                        condition = rest!.ParseExpression();
                        rest.ExpectEnd();
                        break;
                    case "else" when condition is not null:
                        rest!.ExpectEnd();
                        condition = null;
                        break;
                    case "endif":
                        rest!.ExpectEnd();
                        return new IfNode(branches);
                    default:
                        throw new ChatTemplateException(end is null ? "'{% if %}' without '{% endif %}'." : $"'{{% {end} %}}' inside '{{% if %}}'.");
                }
            }
        }

        private ForNode ParseFor(ExpressionParser head)
        {
            string variable = head.ExpectName();
            if (head.Peek(",")) throw new ChatTemplateException("'{% for a, b in ... %}' (unpacking) is not supported.");
            head.ExpectKeyword("in");
            var source = head.ParseOr();
            if (head.PeekKeyword("if")) throw new ChatTemplateException("'{% for ... if ... %}' (loop filters) is not supported.");
            if (head.PeekKeyword("recursive")) throw new ChatTemplateException("Recursive loops are not supported.");
            head.ExpectEnd();
            var body = ParseBody(out string? end, out var rest);
            var otherwise = new List<Node>();
            if (end == "else")
            {
                rest!.ExpectEnd();
                otherwise = ParseBody(out end, out rest);
            }
            if (end != "endfor") throw new ChatTemplateException(end is null ? "'{% for %}' without '{% endfor %}'." : $"'{{% {end} %}}' inside '{{% for %}}'.");
            rest!.ExpectEnd();
            return new ForNode(variable, source, body, otherwise);
        }
    }

    private sealed class ExpressionParser(List<Token> tokens)
    {
        private int _index;

        private Token Current => tokens[_index];

        public bool Peek(string op) => Current.Kind == Kind.Operator && Current.Value == op;
        public bool PeekKeyword(string name) => Current.Kind == Kind.Name && Current.Value == name;

        private bool Accept(string op)
        {
            if (!Peek(op)) return false;
            _index++;
            return true;
        }

        private bool AcceptKeyword(string name)
        {
            if (!PeekKeyword(name)) return false;
            _index++;
            return true;
        }

        public void Expect(string op)
        {
            if (!Accept(op)) throw Error($"expected '{op}'");
        }

        public void ExpectKeyword(string name)
        {
            if (!AcceptKeyword(name)) throw Error($"expected '{name}'");
        }

        public string ExpectName()
        {
            if (Current.Kind != Kind.Name) throw Error("expected a name");
            return tokens[_index++].Value;
        }

        public void ExpectEnd()
        {
            if (Current.Kind != Kind.End) throw Error("unexpected text after the end of the expression");
        }

        private ChatTemplateException Error(string what) =>
            new($"Chat template syntax not supported at position {Current.Position} ('{Current.Value}'): {what}.");

        public Expr ParseExpression()
        {
            var value = ParseOr();
            if (AcceptKeyword("if"))
            {
                var condition = ParseOr();
                Expr? otherwise = AcceptKeyword("else") ? ParseExpression() : null;
                return new Conditional(condition, value, otherwise);
            }
            return value;
        }

        public Expr ParseOr()
        {
            var left = ParseAnd();
            while (AcceptKeyword("or")) left = new Binary("or", left, ParseAnd());
            return left;
        }

        private Expr ParseAnd()
        {
            var left = ParseNot();
            while (AcceptKeyword("and")) left = new Binary("and", left, ParseNot());
            return left;
        }

        private Expr ParseNot() => AcceptKeyword("not") ? new Unary("not", ParseNot()) : ParseComparison();

        private Expr ParseComparison()
        {
            var left = ParseConcat();
            while (true)
            {
                if (Current.Kind == Kind.Operator && Current.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
                {
                    string op = tokens[_index++].Value;
                    left = new Binary(op, left, ParseConcat());
                }
                else if (AcceptKeyword("in")) left = new Binary("in", left, ParseConcat());
                else if (PeekKeyword("not") && tokens[_index + 1] is { Kind: Kind.Name, Value: "in" })
                {
                    _index += 2;
                    left = new Binary("not in", left, ParseConcat());
                }
                else if (AcceptKeyword("is"))
                {
                    bool negated = AcceptKeyword("not");
                    string test = Current.Kind == Kind.Name ? tokens[_index++].Value : throw Error("expected a test name after 'is'");
                    if (!Tests.Contains(test)) throw Error($"the test 'is {test}' is not supported");
                    left = new Test(left, test, negated);
                }
                else return left;
            }
        }

        private Expr ParseConcat()
        {
            var left = ParseAdditive();
            while (Accept("~")) left = new Binary("~", left, ParseAdditive());
            return left;
        }

        private Expr ParseAdditive()
        {
            var left = ParseMultiplicative();
            while (Current.Kind == Kind.Operator && Current.Value is "+" or "-")
            {
                string op = tokens[_index++].Value;
                left = new Binary(op, left, ParseMultiplicative());
            }
            return left;
        }

        private Expr ParseMultiplicative()
        {
            var left = ParseUnary();
            while (Current.Kind == Kind.Operator && Current.Value is "*" or "/" or "//" or "%")
            {
                string op = tokens[_index++].Value;
                left = new Binary(op, left, ParseUnary());
            }
            return left;
        }

        private Expr ParseUnary() => Accept("-") ? new Unary("-", ParseUnary()) : Accept("+") ? ParseUnary() : ParsePostfix(ParsePrimary());

        private Expr ParsePostfix(Expr target)
        {
            while (true)
            {
                if (Accept("."))
                {
                    string member = ExpectName();
                    if (Peek("("))
                    {
                        if (!Methods.Contains(member)) throw Error($"the method '.{member}()' is not supported");
                        target = new MethodCall(target, member, ParseArguments());
                    }
                    else target = new Member(target, new Literal(member));
                }
                else if (Accept("["))
                {
                    Expr? start = Peek(":") ? null : ParseExpression();
                    if (Accept(":"))
                    {
                        Expr? stop = Peek("]") || Peek(":") ? null : ParseExpression();
                        if (Peek(":")) throw Error("slice steps are not supported");
                        target = new Slice(target, start, stop);
                    }
                    else target = new Member(target, start!);
                    Expect("]");
                }
                else if (Accept("|"))
                {
                    string filter = ExpectName();
                    if (!Filters.Contains(filter)) throw Error($"the filter '{filter}' is not supported");
                    target = new Filter(target, filter, Peek("(") ? ParseArguments() : []);
                }
                else if (Peek("(")) throw Error("only raise_exception(...) and string methods can be called");
                else return target;
            }
        }

        private List<Expr> ParseArguments()
        {
            Expect("(");
            var args = new List<Expr>();
            if (Accept(")")) return args;
            do
            {
                if (Current.Kind == Kind.Name && tokens[_index + 1] is { Kind: Kind.Operator, Value: "=" }) throw Error("keyword arguments are not supported");
                args.Add(ParseExpression());
            }
            while (Accept(","));
            Expect(")");
            return args;
        }

        private Expr ParsePrimary()
        {
            var token = Current;
            switch (token.Kind)
            {
                case Kind.String:
                    _index++;
                    // Adjacent literals concatenate, as in Python.
                    string text = token.Value;
                    while (Current.Kind == Kind.String) text += tokens[_index++].Value;
                    return new Literal(text);
                case Kind.Integer:
                    _index++;
                    return new Literal(long.Parse(token.Value, CultureInfo.InvariantCulture));
                case Kind.Float:
                    _index++;
                    return new Literal(double.Parse(token.Value, CultureInfo.InvariantCulture));
                case Kind.Name:
                    _index++;
                    switch (token.Value)
                    {
                        case "true" or "True": return new Literal(true);
                        case "false" or "False": return new Literal(false);
                        case "none" or "None": return new Literal(null);
                        case "raise_exception":
                            var args = ParseArguments();
                            if (args.Count != 1) throw Error("raise_exception takes one message");
                            return new RaiseException(args[0]);
                    }
                    if (Peek("(")) throw Error($"the function '{token.Value}' is not supported");
                    return new Name(token.Value);
                case Kind.Operator when token.Value == "(":
                    _index++;
                    var inner = ParseExpression();
                    Expect(")");
                    return inner;
                case Kind.Operator when token.Value == "[":
                    _index++;
                    var items = new List<Expr>();
                    if (!Accept("]"))
                    {
                        do items.Add(ParseExpression());
                        while (Accept(","));
                        Expect("]");
                    }
                    return new ListExpr(items);
                default:
                    throw Error("expected a value");
            }
        }
    }
}
