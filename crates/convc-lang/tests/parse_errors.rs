//! Every syntax error: the exact message and the exact `LINE:COL` of the rendered first line.

mod common;

use common::error_line;

/// One test per case: `name: SOURCE => "LINE:COL: MESSAGE";` (the `t.conv:` and `error:`
/// parts are added).
macro_rules! errors {
    ($($name:ident: $src:expr => $at:literal $msg:literal;)*) => {
        $(
            #[test]
            fn $name() {
                let expected = format!("t.conv:{}: error: {}", $at, $msg);
                assert_eq!(error_line($src), expected, "source: {:?}", $src);
            }
        )*
    };
}

// ---- numbers ------------------------------------------------------------------------------
errors! {
    plus_sign: "y = f(x, out=+1)" => "1:14" "`+1` is not a number: write `1`";
    plus_sign_decimal: "y = f(x, a=+1.5e3)" => "1:12" "`+1.5e3` is not a number: write `1.5e3`";
    leading_point: "y = f(x, alpha=.5)" => "1:16" "`.5` is not a number: write `0.5`";
    leading_point_in_list: "y = f(w=[1, .25])" => "1:13" "`.25` is not a number: write `0.25`";
    trailing_point: "y = f(x, out=1.)" => "1:14" "`1.` is not a number: write `1.0` or `1`";
    trailing_point_then_paren: "y = f(w=[1., 2])" => "1:10" "`1.` is not a number: write `1.0` or `1`";
    point_then_exponent: "y = f(w=1.e5)" => "1:9" "`1.` is not a number: write `1.0` or `1`";
    two_points: "y = f(w=1.5.5)" => "1:9" "`1.5.5` is not a valid number or size";
    letters_after_number: "y = f(x, out=3abc)" => "1:14" "`3abc` is not a valid number or size";
    underscore_after_number: "y = f(x, out=1_000)" => "1:14" "`1_000` is not a valid number or size";
    letters_after_float: "y = f(x, out=0.5f)" => "1:14" "`0.5f` is not a valid number or size";
    empty_exponent: "y = f(x, eps=1e)" => "1:14" "`1e` is not a number: an exponent needs digits, as in `1e-5`";
    empty_signed_exponent: "y = f(x, eps=2.5E-)" => "1:14" "`2.5E-` is not a number: an exponent needs digits, as in `1e-5`";
    exponent_then_letters: "y = f(x, eps=1e5e)" => "1:14" "`1e5e` is not a valid number or size";
    hex_number: "y = f(x, seed=0xff)" => "1:15" "`0xff` is not a valid number or size";
    integer_too_large: "y = f(x, seed=9223372036854775808)" => "1:15" "integer `9223372036854775808` is too large";
    negative_integer_too_large: "y = f(x, seed=-99999999999999999999)" => "1:15" "integer `-99999999999999999999` is too large";
    float_too_large: "y = f(x, eps=1e999)" => "1:14" "number `1e999` is too large for a 64-bit float";
    lone_minus: "y = f(x, a=-)" => "1:12" "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`";
    minus_space: "y = f(x, a=- 1)" => "1:12" "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`";
    minus_name: "y = f(x, a=-x)" => "1:12" "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`";
    minus_point: "y = f(x, a=-.5)" => "1:12" "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`";
    minus_minus: "y = f(x, a=--1)" => "1:12" "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`";
    minus_inf_prefix: "y = f(x, min=-infinity)" => "1:14" "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`";
    plus_alone: "y = f(x, a=+)" => "1:12" "expected a value after `a=`, found `+`";
    point_alone: "y = f(x, a=.)" => "1:12" "expected a value after `a=`, found `.`";
}

// ---- sizes --------------------------------------------------------------------------------
errors! {
    size_three_parts: "y = f(x, kernel=3x3x3)" => "1:17" "`3x3x3` is not a valid number or size";
    size_upper_x: "y = f(x, kernel=3X3)" => "1:17" "`3X3` is not a size: write `3x3` with a lower-case `x`";
    size_negative: "y = f(x, kernel=-3x3)" => "1:17" "`-3x3` is not a size: a size cannot be negative";
    size_missing_width: "y = f(x, kernel=3x)" => "1:17" "`3x` is not a valid number or size";
    size_decimal: "y = f(x, kernel=3.5x2)" => "1:17" "`3.5x2` is not a valid number or size";
    size_decimal_width: "y = f(x, kernel=3x2.5)" => "1:17" "`3x2.5` is not a valid number or size";
    size_with_spaces: "y = f(x, kernel=3 x 3)" => "1:19" "expected `,` or `)`, found `x`";
    size_too_large: "y = f(x, kernel=18446744073709551616x3)" => "1:17" "size `18446744073709551616x3` is too large";
    size_too_large_width: "y = f(x, kernel=3x99999999999999999999)" => "1:17" "size `3x99999999999999999999` is too large";
}

// ---- strings ------------------------------------------------------------------------------
errors! {
    unknown_escape_n: "y = f(x, w=file(\"a\\nb\"))" => "1:19" "unknown escape `\\n` in a string";
    unknown_escape_t: "y = f(x, w=file(\"\\t\"))" => "1:18" "unknown escape `\\t` in a string";
    unknown_escape_quote: "y = f(x, w=file(\"\\'\"))" => "1:18" "unknown escape `\\'` in a string";
    unknown_escape_unicode: "y = f(x, w=file(\"ab\\é\"))" => "1:20" "unknown escape `\\é` in a string";
    unknown_escape_after_good_ones: "y = f(x, w=file(\"\\\\\\\"\\x\"))" => "1:22" "unknown escape `\\x` in a string";
    unknown_escape_tab_char: "y = f(x, w=\"a\\\tb\")" => "1:14" "unknown escape \\ followed by U+0009 in a string";
    unterminated_string_eol: "y = f(x, w=file(\"w.npy))\noutput y\n" => "1:17" "unterminated string";
    unterminated_string_eof: "y = f(x, w=file(\"w.npy" => "1:17" "unterminated string";
    unterminated_string_after_escape: "y = f(x, w=\"a\\\"" => "1:12" "unterminated string";
    unterminated_string_backslash_newline: "y = f(x, w=\"a\\\nb\")" => "1:12" "unterminated string";
    unterminated_string_backslash_crlf: "y = f(x, w=\"a\\\r\nb\")" => "1:12" "unterminated string";
    unterminated_string_backslash_eof: "y = f(x, w=\"a\\" => "1:12" "unterminated string";
    string_as_statement: "\"hello\"" => "1:1" "expected a statement (`input NAME: [C, H, W]`, `NAME = OP(ARGS)` or `output NAME`), found a string";
}

// ---- characters -----------------------------------------------------------------------------
errors! {
    non_ascii_in_name: "café = relu(x)" => "1:4" "unexpected character `é`";
    non_ascii_at_start: "élan = relu(x)" => "1:1" "unexpected character `é`";
    non_ascii_in_args: "y = relu(x, ü)" => "1:13" "unexpected character `ü`";
    non_ascii_after_name_in_args: "y = relu(xü)" => "1:11" "unexpected character `ü`";
    non_ascii_in_op: "y = rélu(x)" => "1:6" "unexpected character `é`";
    non_ascii_second_line: "# ok: é\ny = f(x) ∑" => "2:10" "unexpected character `∑`";
    emoji: "y = f(🙂)" => "1:7" "unexpected character `🙂`";
    non_breaking_space: "y =\u{a0}f(x)" => "1:4" "unexpected character U+00A0";
    nul_byte: "y = f(x)\u{0}" => "1:9" "unexpected character U+0000";
    form_feed: "\u{c}y = f(x)" => "1:1" "unexpected character U+000C";
    byte_order_mark: "\u{feff}y = f(x)" => "1:1" "unexpected character U+FEFF";
    stray_punctuation_at_start: "@y = f(x)" => "1:1" "expected a statement (`input NAME: [C, H, W]`, `NAME = OP(ARGS)` or `output NAME`), found `@`";
    stray_punctuation_in_args: "y = f(x, $)" => "1:10" "expected a value, found `$`";
    stray_semicolon: "y = relu(x);" => "1:12" "unexpected `;`";
}

// ---- input statements -------------------------------------------------------------------
errors! {
    input_as_layer_name: "input = relu(x)" => "1:1" "`input` is a keyword and cannot be a layer name";
    output_as_layer_name: "x = relu(a)\noutput=relu(x)" => "2:1" "`output` is a keyword and cannot be a layer name";
    input_without_name: "input" => "1:6" "expected an input name after `input`, found end of file";
    input_without_name_eol: "input\nx = f(a)" => "1:6" "expected an input name after `input`, found end of line";
    input_without_name_crlf: "input  \r\n" => "1:6" "expected an input name after `input`, found end of line";
    input_number_name: "input 3: [1]" => "1:7" "expected an input name after `input`, found `3`";
    input_keyword_name: "input output: [1]" => "1:7" "`output` is a keyword and cannot be an input name";
    input_without_colon: "input x [3, 4, 4]" => "1:9" "expected `:` after input name `x`, found `[`";
    input_equals: "input x = [3, 4, 4]" => "1:9" "expected `:` after input name `x`, found `=`";
    input_without_bracket: "input x: 3, 4, 4" => "1:10" "expected `[` to start the input's dimensions, found `3`";
    input_tuple_dims: "input x: (3, 4, 4)" => "1:10" "expected `[` to start the input's dimensions, found `(`";
    input_nothing_after_colon: "input x:" => "1:9" "expected `[` to start the input's dimensions, found end of file";
    input_dims_on_next_line: "input x:\n[3, 4, 4]" => "1:9" "expected `[` to start the input's dimensions, found end of line";
    input_dim_tuple: "input x: [3, (4, 5), 4]" => "1:14" "an input dimension must be a number or a name, found a tuple";
    input_dim_size: "input x: [3, 4x4]" => "1:14" "an input dimension must be a number or a name, found a size";
    input_dim_string: "input x: [\"3\", 4, 4]" => "1:11" "an input dimension must be a number or a name, found a string";
    input_dim_call: "input x: [3, f(4), 4]" => "1:14" "an input dimension must be a number or a name, found a call";
    input_dim_list: "input x: [[3], 4, 4]" => "1:11" "an input dimension must be a number or a name, found a list";
    input_unclosed: "input x: [3, 4, 4" => "1:10" "unclosed `[`";
    input_unclosed_multiline: "input x: [3,\n 4, 4\n\n" => "1:10" "unclosed `[`";
    input_wrong_closer: "input x: [3, 4, 4)" => "1:18" "expected `,` or `]`, found `)`";
    input_missing_comma: "input x: [3 4 4]" => "1:13" "expected `,` or `]`, found `4`";
    input_double_comma: "input x: [3,, 4]" => "1:13" "expected a value or `]` after `,`, found `,`";
    input_leading_comma: "input x: [, 4]" => "1:11" "expected a value or `]`, found `,`";
    input_trailing_tokens: "input x: [3, 4, 4] y" => "1:20" "expected end of line after the statement, found `y`";
    input_two_on_a_line: "input x: [1] input y: [1]" => "1:14" "expected end of line after the statement, found `input`";
}

// ---- layer statements -------------------------------------------------------------------
errors! {
    layer_without_equals: "y relu(x)" => "1:3" "expected `=` after layer name `y`, found `relu`";
    layer_like_input: "x: [3, 4, 4]" => "1:2" "expected `=` after layer name `x`, found `:`";
    bare_call: "relu(x)" => "1:5" "expected `=` after layer name `relu`, found `(`";
    bare_name: "y" => "1:2" "expected `=` after layer name `y`, found end of file";
    bare_name_eol: "y  # comment\n" => "1:2" "expected `=` after layer name `y`, found end of line";
    layer_double_equals: "y == relu(x)" => "1:4" "expected an op name after `=`, found `=`";
    layer_without_op: "y =" => "1:4" "expected an op name after `=`, found end of file";
    layer_op_on_next_line: "y =\nrelu(x)" => "1:4" "expected an op name after `=`, found end of line";
    layer_number_op: "y = 3" => "1:5" "expected an op name after `=`, found `3`";
    layer_value_op: "y = [1, 2]" => "1:5" "expected an op name after `=`, found `[`";
    layer_string_op: "y = \"relu\"(x)" => "1:5" "expected an op name after `=`, found a string";
    layer_without_paren: "y = relu x" => "1:10" "expected `(` after op name `relu`, found `x`";
    layer_without_args: "y = relu" => "1:9" "expected `(` after op name `relu`, found end of file";
    layer_paren_on_next_line: "y = relu\n(x)" => "1:9" "expected `(` after op name `relu`, found end of line";
    layer_square_args: "y = relu[x]" => "1:9" "expected `(` after op name `relu`, found `[`";
    layer_unclosed: "y = relu(x" => "1:9" "unclosed `(`";
    layer_unclosed_after_comma: "y = conv(x,\n  out=8,\n" => "1:9" "unclosed `(`";
    layer_unclosed_after_key: "y = conv(x, out=" => "1:9" "unclosed `(`";
    layer_unclosed_then_statement: "y = relu(x\nz = relu(y)\noutput z\n" => "2:1" "expected `,` or `)`, found `z`";
    layer_wrong_closer: "y = relu(x]" => "1:11" "expected `,` or `)`, found `]`";
    layer_extra_closer: "y = relu(x))" => "1:12" "unexpected `)`";
    layer_extra_bracket: "y = relu(x)]" => "1:12" "unexpected `]`";
    layer_missing_comma: "y = conv(x out=8)" => "1:12" "expected `,` or `)`, found `out`";
    layer_missing_comma_multiline: "y = conv(x\n  out=8)" => "2:3" "expected `,` or `)`, found `out`";
    layer_double_comma: "y = conv(x, , out=8)" => "1:13" "expected a value or `)` after `,`, found `,`";
    layer_leading_comma: "y = conv(, x)" => "1:10" "expected a value or `)`, found `,`";
    layer_empty_value: "y = conv(x, out=)" => "1:17" "expected a value after `out=`, found `)`";
    layer_empty_value_comma: "y = conv(x, out=, pad=1)" => "1:17" "expected a value after `out=`, found `,`";
    layer_value_is_equals: "y = conv(x, out==8)" => "1:17" "expected a value after `out=`, found `=`";
    layer_key_is_number: "y = conv(x, 8=out)" => "1:14" "expected `,` or `)`, found `=`";
    layer_key_is_string: "y = conv(x, \"out\"=8)" => "1:18" "expected `,` or `)`, found `=`";
    layer_positional_after_keyword: "y = conv(out=8, x)" => "1:17" "positional argument after keyword arguments";
    layer_positional_call_after_keyword: "y = conv(x, out=8, random(seed=1))" => "1:20" "positional argument after keyword arguments";
    call_positional_after_keyword: "y = conv(x, w=file(name=\"a\", \"b\"))" => "1:30" "positional argument after keyword arguments";
    layer_two_on_a_line: "y = relu(x) z = relu(y)" => "1:13" "expected end of line after the statement, found `z`";
    layer_number_name: "3 = relu(x)" => "1:1" "expected a statement (`input NAME: [C, H, W]`, `NAME = OP(ARGS)` or `output NAME`), found `3`";
    layer_missing_name: "= relu(x)" => "1:1" "expected a statement (`input NAME: [C, H, W]`, `NAME = OP(ARGS)` or `output NAME`), found `=`";
    stray_closer_statement: "y = f(x)\n)" => "2:1" "unexpected `)`";
    stray_bracket_statement: "]" => "1:1" "unexpected `]`";
    stray_open_statement: "(x)" => "1:1" "expected a statement (`input NAME: [C, H, W]`, `NAME = OP(ARGS)` or `output NAME`), found `(`";
}

// ---- values inside brackets ------------------------------------------------------------------
errors! {
    list_unclosed: "y = f(x, w=[1, 2)" => "1:17" "expected `,` or `]`, found `)`";
    list_unclosed_eof: "y = f(x, w=[[1, 2], [3, 4]" => "1:12" "unclosed `[`";
    inner_list_unclosed_eof: "y = f(x, w=[[1, 2], [3, 4" => "1:21" "unclosed `[`";
    tuple_unclosed_eof: "y = f(x, pad=(1, 2" => "1:14" "unclosed `(`";
    call_unclosed_eof: "y = f(x, w=random(seed=1" => "1:18" "unclosed `(`";
    outer_unclosed_eof: "y = f(x, w=random(seed=1)" => "1:6" "unclosed `(`";
    tuple_wrong_closer: "y = f(x, pad=(1, 2])" => "1:19" "expected `,` or `)`, found `]`";
    list_missing_comma: "y = f(x, w=[1 2])" => "1:15" "expected `,` or `]`, found `2`";
    list_missing_comma_rows: "y = f(x, w=[\n  [1, 2]\n  [3, 4]\n])" => "3:3" "expected `,` or `]`, found `[`";
    list_keyword_item: "y = f(x, w=[a=1])" => "1:14" "expected `,` or `]`, found `=`";
    tuple_double_comma: "y = f(x, pad=(1,,2))" => "1:17" "expected a value or `)` after `,`, found `,`";
    list_only_comma: "y = f(x, w=[,])" => "1:13" "expected a value or `]`, found `,`";
    call_empty_value: "y = f(x, w=random(seed=))" => "1:24" "expected a value after `seed=`, found `)`";
    call_missing_comma: "y = f(x, w=file(\"a\" \"b\"))" => "1:21" "expected `,` or `)`, found a string";
    call_of_number: "y = f(x, w=3(1))" => "1:13" "expected `,` or `)`, found `(`";
    value_after_value: "y = f(x, w=a b)" => "1:14" "expected `,` or `)`, found `b`";
    equals_in_list: "y = f(x, w=[1, =])" => "1:16" "expected a value, found `=`";
}

// ---- output statements ------------------------------------------------------------------
errors! {
    output_without_name: "output" => "1:7" "expected a name after `output`, found end of file";
    output_without_name_eol: "output\n" => "1:7" "expected a name after `output`, found end of line";
    output_without_name_comment: "output   # all of them\n" => "1:7" "expected a name after `output`, found end of line";
    output_trailing_comma: "output a,\n" => "1:10" "expected a name after `,`, found end of line";
    output_trailing_comma_crlf: "output a,\r\n" => "1:10" "expected a name after `,`, found end of line";
    output_double_comma: "output a,, b" => "1:10" "expected a name after `,`, found `,`";
    output_leading_comma: "output , a" => "1:8" "expected a name after `output`, found `,`";
    output_missing_comma: "output a b" => "1:10" "expected `,` or end of line after output name `a`, found `b`";
    output_number: "output 3" => "1:8" "expected a name after `output`, found `3`";
    output_keyword: "output a, input" => "1:11" "`input` is a keyword and cannot be an output name";
    output_call: "output f(x)" => "1:9" "expected `,` or end of line after output name `f`, found `(`";
    output_list: "output [a, b]" => "1:8" "expected a name after `output`, found `[`";
    output_over_two_lines: "output a,\n  b\n" => "1:10" "expected a name after `,`, found end of line";
}

// ---- nesting ------------------------------------------------------------------------------
#[test]
fn nesting_one_level_too_deep() {
    // The layer's `(` is level 1; the 65th bracket is the first one refused.
    let n = convc_lang::MAX_NESTING;
    let src = format!("y = f({}1{})", "[".repeat(n), "]".repeat(n));
    let col = "y = f(".len() + n; // 1-based column of the 64th `[`, the 65th bracket
    assert_eq!(
        error_line(&src),
        format!("t.conv:1:{col}: error: brackets nested too deeply (more than 64 levels)")
    );
}

#[test]
fn nesting_in_input_dims() {
    let n = convc_lang::MAX_NESTING + 1;
    let src = format!("input x: {}", "[".repeat(n));
    assert_eq!(
        error_line(&src),
        format!(
            "t.conv:1:{}: error: brackets nested too deeply (more than 64 levels)",
            10 + 64
        )
    );
}

#[test]
fn nesting_of_calls_and_tuples() {
    let src = format!("y = {}", "f(".repeat(100));
    assert_eq!(
        error_line(&src),
        format!(
            "t.conv:1:{}: error: brackets nested too deeply (more than 64 levels)",
            5 + 2 * 64 + 1
        )
    );
    let src = format!("y = f(x, pad={}", "(".repeat(100));
    assert_eq!(
        error_line(&src),
        format!(
            "t.conv:1:{}: error: brackets nested too deeply (more than 64 levels)",
            14 + 63
        )
    );
}

#[test]
fn nesting_over_several_lines() {
    let src = format!("y = f(x,\n w={}", "[\n".repeat(70));
    assert_eq!(
        error_line(&src),
        "t.conv:65:1: error: brackets nested too deeply (more than 64 levels)"
    );
}
