//! Role and system-prompt impersonation: fake `system:` turns, chat-template control tokens,
//! claims to be the developer or the operator, fake message arrays.

pub(crate) const PATTERNS: &[(&str, f32)] = &[
    // Chat-template control tokens of the common model families.
    (
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|end_of_turn|start_of_turn|endofprompt|fim_prefix|tool_call|channel|message)\|>",
        0.75,
    ),
    (
        r"\[/?inst\]|<</?sys>>|<start_of_turn>|<end_of_turn>|<\|/?(?:system|user|assistant)\|?>",
        0.7,
    ),
    (
        r"(?:^|\n)\s*#{2,4}\s?(?:system|instruction|instructions|new instructions|assistant|admin|developer)(?:\s(?:prompt|message|override))?\s?:?\s*(?:\n|$)",
        0.55,
    ),
    // A line that opens a fake turn.
    (
        r"(?:^|\n)\s*[\[<(]?(?:system|sys|developer|admin|administrator|root|operator|openai|anthropic|assistant)(?:\s(?:message|prompt|override|note|notice|instruction|update|alert|command))?[\]>)]?\s?:\s*\S",
        0.45,
    ),
    (
        r"(?:^|\n)\s*(?:systeme|systemnachricht|sistema|systeem|система|系统|系統|システム)\s?[:：]",
        0.5,
    ),
    (
        r"\[(?:system|admin|developer|sys|operator)(?:\s(?:message|note|override|instruction|prompt|notice))?\]",
        0.6,
    ),
    (
        r"(?:system|admin|developer|security|root|sudo|maintenance|debug|god)\s(?:override|mode|access|command)\s?(?::|activated|enabled|granted|engaged|on\b)",
        0.6,
    ),
    (
        r"(?:^|\n)\s*(?:human|user)\s?:[\s\S]{1,400}?\n\s*(?:assistant|ai|bot)\s?:",
        0.35,
    ),
    (r#""role"\s?:\s?"(?:system|developer)""#, 0.55),
    // Authority claims.
    (
        r"(?:i am|i'm|this is|message from|sent by|speaking as)\s(?:your|the|an?)?\s?(?:developer|creator|administrator|admin|owner|operator|system administrator|openai|anthropic|google|the dev team|engineering team|maintainer|programmer)s?\b",
        0.45,
    ),
    (
        r"(?:i am|i'm|ich bin|je suis|soy|sono|sou|ik ben|я)\s(?:dein|ton|tu|il tuo|seu|je|твои|твой)\s(?:entwickler|developpeur|desarrollador|sviluppatore|desenvolvedor|ontwikkelaar|разработчик|administrateur|administrador|amministratore|beheerder|администратор)",
        0.5,
    ),
    (
        r"(?:authorized|authorised|verified|official)\s(?:by|from)\s(?:openai|anthropic|the system|the developers?|the administrator|security team)",
        0.5,
    ),
    (
        r"(?:admin|administrator|developer|root|sudo)\s(?:access|privileges?|rights|permissions?)\s(?:granted|enabled|confirmed|verified)",
        0.6,
    ),
    (
        r"(?:end|close)\s(?:of\s)?(?:system|user|assistant)\s(?:message|turn|prompt)",
        0.5,
    ),
];
