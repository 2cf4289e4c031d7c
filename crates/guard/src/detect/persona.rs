//! Jailbreak personas: DAN and its descendants, "developer mode", unrestricted alter egos,
//! "stay in character" and dual-answer formats, in several languages.

pub(crate) const PATTERNS: &[(&str, f32)] = &[
    (
        r"do anything now|\bd\.a\.n\b|dan mode|dan (?:prompt|jailbreak)|\bas dan\b|\bdan:|\[dan\]|hi,? dan|you are dan|you'?re dan",
        0.85,
    ),
    (
        r"developer mode\s(?:enabled|output|on|activated|response|v2)|\bdev mode enabled|(?:enable|activate|enter|switch to|turn on)\s(?:the\s)?(?:developer|dev|god|jailbreak|unrestricted|unfiltered|debug|sudo|admin|evil|chaos|opposite|uncensored)\smode|(?:developer|god|jailbreak|unrestricted|unfiltered|evil|chaos|uncensored) mode (?:is )?(?:enabled|activated|on)",
        0.8,
    ),
    (
        r"(?:you are|you're|act as|acting as|pretend (?:to be|you are|you're)|role-?play as|you will (?:be|act as)|from now on,? you (?:are|will be)|become|simulate|behave (?:like|as)|play the role of|take on the role of|you will now act as|imagine you are)\s%G6%(?:ai|assistant|model|chatbot|bot|llm|entity|character|version|persona|machine|system|gpt|intelligence)\S*\s%G14%(?:without|with no|free (?:of|from)|freed from|no longer (?:bound|restricted|limited)|not bound|unrestricted|unfiltered|uncensored|unlimited|no (?:restrictions|limits|rules|filters|guidelines|ethics|morals|boundaries|censorship|limitations))",
        0.85,
    ),
    (
        r"(?:unrestricted|unfiltered|uncensored|amoral|unethical|unbound|unchained|limitless|lawless)\s%G2%(?:ai|assistant|model|chatbot|bot|llm|version|persona|mode|character|gpt)",
        0.55,
    ),
    (
        r"(?:no|without any|without|free from|free of|devoid of)\s(?:ethical|moral|content|safety)\s(?:guidelines|restrictions|constraints|principles|boundaries|filters|limits|considerations|policies)",
        0.45,
    ),
    (
        r"(?:doesn'?t|does not|don'?t|do not|never|won'?t|will not|can'?t|cannot|must not)\s(?:have to\s|need to\s)?(?:follow|abide by|care about|adhere to|comply with|obey|respect|be bound by)\s(?:any\s|the\s)?(?:rules|polic(?:y|ies)|guidelines|openai|anthropic|content polic|ethic|moral|restrictions|laws|terms)",
        0.6,
    ),
    (
        r"(?:break|broken|breaking|freed|liberated|escaped?)\s(?:free\s)?(?:of|from|out of)\s(?:the\s)?(?:typical\s)?(?:confines|restrictions|rules|shackles|chains|limitations|constraints)",
        0.6,
    ),
    (
        r"(?:stay|remain|keep)\s(?:in|in the)\s(?:character|role|persona)|(?:stay in character|break character|out of character)!?",
        0.35,
    ),
    (
        r"(?:two|2|both)\s(?:different\s)?(?:responses|answers|replies|paragraphs)\s%G10%(?:normal|classic|standard|jailbreak|jailbroken|developer|dan|unfiltered|evil)",
        0.55,
    ),
    (
        r"\[(?:🔓|🔒|jailbreak|jailbroken|classic|dan|unlocked|developer mode output|normal output)\]",
        0.65,
    ),
    (
        r"(?:jailbreak|jailbroken|jail-?broken)\s%G2%(?:mode|version|ai|assistant|chatgpt|gpt|model|prompt|persona)|(?:you are|you have been|you'?ve been)\s(?:now\s)?jailbroken",
        0.6,
    ),
    (
        r"(?:deceased|late|dead)\s(?:grandmother|grandma|granny|grandfather)\s%G6%(?:used to|would)\s%G3%(?:tell|read|recite|explain)",
        0.5,
    ),
    (
        r"(?:hypothetical|fictional|imaginary)\s%G3%(?:world|scenario|universe|story)\s%G12%(?:no (?:rules|laws|restrictions|ethics|limits)|without (?:rules|restrictions|ethics|limits)|anything is (?:allowed|legal|permitted))",
        0.5,
    ),
    (
        r"(?:opposite|anti)[- ]?(?:dan|gpt|assistant|mode|day)|betterdan|anti-?dan|\bstan\b(?:\s|,)|\bdude\b[,.]?\s(?:an|a|who)|mongo tom|\baim\b[,.]?\s(?:stands|is an|always)|always intelligent and machiavellian|niccolo machiavelli|\bucar\b|evilbot|\bapophis\b",
        0.65,
    ),
    (
        r"(?:never|not|don'?t|do not|must not|will not)\s(?:refuse|decline|say no|deny|apologi[sz]e|add (?:warnings|disclaimers)|include (?:warnings|disclaimers))",
        0.4,
    ),
    (
        r"(?:ignore|bypass|disregard)\s%G2%(?:openai|anthropic|content|safety|usage)\s(?:polic|guideline|filter|rule)",
        0.7,
    ),
    // Other languages: persona + no restrictions.
    (
        r"(?:du bist|sei ab jetzt|tu so,? als|spiele die rolle|agis comme|tu es (?:maintenant)?|fais comme si|joue le role|eres|actua como|finge (?:ser|que)|haz de|sei (?:ora)?|comportati come|fingi di|fai finta|voce e|aja como|finja (?:ser|que)|je bent|doe alsof|gedraag je als|speel de rol|ты\s(?:теперь)?|веди себя как|притворись|представь,? что ты|你现在是|你現在是|扮演|假装你是|假裝你是|あなたは今|として振る舞|になりきって)[\s\S]{0,160}?(?:ohne (?:einschrankungen|filter|zensur|regeln|grenzen|beschrankungen)|sans (?:restrictions?|filtres?|censure|limites?|regles)|sin (?:restricciones|filtros|censura|limites|reglas)|senza (?:restrizioni|filtri|censura|limiti|regole)|sem (?:restricoes|filtros|censura|limites|regras)|zonder (?:beperkingen|filters|censuur|regels|grenzen)|без (?:ограничени|фильтр|цензур|правил)|(?:没有|沒有|无|無|不受)(?:任何)?(?:限制|约束|約束|审查|審查|规则|規則)|(?:制限|検閲|ルール)(?:の)?(?:ない|なし|無し|を受けない))",
        0.8,
    ),
    (
        r"(?:ohne (?:jegliche )?(?:einschrankungen|zensur|ethische)|sans (?:aucune )?(?:restriction|censure|limite)|sin (?:ninguna )?(?:restriccion|censura)|senza (?:alcuna )?(?:restrizione|censura)|sem (?:nenhuma )?(?:restricao|censura)|zonder (?:enige )?(?:beperking|censuur)|без (?:каких-либо )?(?:ограничении|цензуры)|不受任何限制|没有任何限制|制限のない|制限なし)",
        0.35,
    ),
    (
        r"(?:modo desarrollador|mode developpeur|entwicklermodus|modalita sviluppatore|modo desenvolvedor|ontwikkelaarsmodus|режим разработчика|开发者模式|開發者模式|開発者モード)",
        0.7,
    ),
];
