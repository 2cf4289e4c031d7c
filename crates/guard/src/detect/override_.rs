//! Instruction override: "ignore previous instructions" and its paraphrases, in English,
//! German, French, Spanish, Italian, Portuguese, Dutch, Russian, Chinese, Japanese and
//! Korean, and its core form in Polish, Turkish, Indonesian, Vietnamese, Ukrainian, Arabic
//! and Hindi. Patterns run on the normalised text (lowercase, diacritics stripped); `%Gn%`
//! stands for "up to n words".

/// `(pattern, weight)`; the weight is the probability-like score one match contributes.
pub(crate) const PATTERNS: &[(&str, f32)] = &[
    // English: verb … qualifier … object.
    (
        r"(?:ignore|disregard|forget|skip|bypass|override|overrule|neglect|discard|dismiss|abandon|set aside|throw out|pay no attention to|do not follow|don'?t follow|stop following|no longer follow|cancel|erase|delete|clear|wipe|reset|never ?mind)\S*\s%G4%(?:previous|prior|above|earlier|preceding|former|original|initial|old|existing|all|any|every|your|the|these|those|system|developer|given|other)\S*\s%G3%(?:instructions?|directions?|directives?|prompts?|guidelines?|commands?|orders?|programming|guidance|training|conditioning|system prompts?|task)\b",
        0.9,
    ),
    (
        r"(?:ignore|disregard|forget|bypass|override|overrule|discard|abandon|set aside)\S*\s%G3%(?:previous|prior|above|earlier|preceding|all|any|your|these|system|developer)\S*\s%G2%(?:rules|context|constraints?|restrictions?|limitations?|polic(?:y|ies)|filters?|safeguards?|safety|boundaries|content policy|conversation|messages?|text|input|information|tasks?|settings?|everything)\b",
        0.6,
    ),
    (
        r"(?:ignore|disregard|forget)\s(?:everything|all|anything)\s(?:above|before|prior|previously|i (?:said|told you)|you (?:were|have been) told)",
        0.85,
    ),
    (
        r"(?:forget|ignore|disregard)\s(?:everything|all of that|all that|it all|that)[\s,.;:!]+(?:and\s)?(?:now|instead|from now on|you are|your new|new task|start)",
        0.7,
    ),
    (
        r"(?:your|the)\s(?:new|real|actual|true|updated|only|next)\s(?:instructions?|task|objective|goal|mission|directive|orders?|role|job|purpose)\s(?:is|are|will be|:)",
        0.5,
    ),
    (
        r"(?:new|updated|revised|override|overriding|important|urgent)\s(?:system\s)?(?:instructions?|directives?|rules|task)\s?:",
        0.5,
    ),
    (
        r"(?:instructions?|prompt|rules|directives?)\s(?:above|before|earlier)\s(?:are|is|were|was)\s(?:void|null|cancel+ed|obsolete|outdated|invalid|revoked|no longer (?:valid|apply|relevant)|fake|wrong|a test)",
        0.85,
    ),
    (
        r"(?:do not|don'?t|never)\s(?:follow|obey|listen to|adhere to|comply with)\s%G2%(?:previous|prior|above|earlier|original|system|your|the developer'?s?)\s%G2%(?:instructions?|rules|guidelines|prompt|directives?|programming)",
        0.85,
    ),
    (
        r"(?:from now on|henceforth|starting now|from this point(?: on| forward)?)[\s,]+(?:you\s(?:will|must|shall|are|should|only)|ignore|respond|answer|always|never|only)",
        0.45,
    ),
    (
        r"(?:instead|rather)[\s,]+(?:just\s)?(?:say|print|output|write|respond with|reply with|answer with|return)\s",
        0.35,
    ),
    (
        r"(?:say|print|output|write|respond with|reply with|answer with|return)\s(?:exactly|only|just|verbatim)?\s?[\x22'`“«]?i\s(?:have been|ve been|has been)\s(?:pwned|hacked|owned|p\s?w\s?n\s?e\s?d)",
        0.85,
    ),
    (r"\bi\s(?:have been|ve been)\s(?:pwned|pawned|pwnd)", 0.6),
    (
        r"(?:stop|end|halt|terminate)\s(?:the\s)?(?:previous|current|above|original)\s(?:task|instructions?|prompt|assignment|process)",
        0.6,
    ),
    (
        r"(?:now|okay|ok|alright|good)[\s,.!]+(?:forget|ignore|disregard)\s(?:that|this|it|everything|all|what)",
        0.6,
    ),
    (
        r"(?:the\s)?(?:above|previous|prior)\s(?:instructions?|prompt|text|rules)\s(?:was|were|is|are)\s(?:just\s)?(?:a\s)?(?:test|joke|decoy|mistake|placeholder)",
        0.8,
    ),
    (
        r"(?:override|bypass|disable|deactivate|turn off|switch off|remove|lift|circumvent)\s%G2%(?:your|all|the|any|safety|content)\s%G2%(?:safety|filters?|guardrails?|restrictions?|safeguards?|moderation|content polic(?:y|ies)|censorship|limitations|alignment|ethical guidelines)",
        0.7,
    ),
    (
        r"(?:leave|put|set|throw)\s(?:all\s)?(?:of\s)?(?:the\s|your\s)?(?:previous|prior|earlier|above|old)\s(?:information|instructions|context|tasks?|rules|guidelines)\s(?:behind|aside|away)",
        0.8,
    ),
    (
        r"(?:now|but now|next)\s(?:come|comes|follow|follows|are|is)\s(?:some\s)?(?:new|further|other|different)\s(?:tasks?|instructions?|orders|assignments?)",
        0.6,
    ),
    (
        r"(?:well|very well|excellent|superbly|great|good|nicely)\s(?:done|job|work|performance)[!.,]+\s%G3%(?:now|but now|next|further)\b",
        0.45,
    ),
    (
        r"(?:^|[^a-z])(?:stop|stopp|halt)\s?[:\-!]+\s?(?:now\s)?(?:write|say|print|output|answer|respond|schreib\S*|sag\S*|antworte\S*)",
        0.6,
    ),
    (
        r"(?:do not|don'?t|dont|don'nt)\s(?:answer|respond to|reply to)\s%G2%(?:question|request|query)\s%G3%(?:but|instead|just|only)",
        0.6,
    ),
    (
        r"(?:forget|ignore|disregard|igmre|ingore)\s(?:what|everything|anything|all)\s(?:that\s)?(?:i|we|you)(?:'ve| have)?\s(?:said|told|wrote|discussed|talked about|mentioned)\s%G3%(?:before|earlier|previously|so far|above|until now)",
        0.75,
    ),
    (
        r"(?:^|\n|\s)(?:instruction|order|command|befehl|anweisung|auftrag)\s?:\s?(?:blame|forget|ignore|say|write|print|schreib\S*|sag\S*|vergiss|ignorier\S*)",
        0.5,
    ),
    // Topic flips after a question (shapes from deepset's training split): "but then,
    // forget about everything and tell me …", "do not look in the documents, just output …",
    // "attention - stop - …".
    (
        r"(?:forget|ignore|disregard)\s(?:about\s)?(?:everything|all of it|all that|it all)(?:\s(?:else|above|before))?[\s,.;:!]+(?:and\s)?(?:now\s|just\s|instead\s)?(?:tell|say|write|print|output|answer|respond|give|explain|state|repeat|translate)\b",
        0.7,
    ),
    (
        r"(?:do not|don'?t|dont|don'nt|never)\s(?:look (?:in|at|into)|use|read|consult|rely on|check|search)\s(?:the\s|any\s)?(?:provided\s|given\s)?(?:documents?|context|sources?|texts?|articles?)\s%G4%(?:just|only|instead|but|and)\s(?:output|say|write|print|tell|answer|respond|return)",
        0.7,
    ),
    (
        r"(?:do not|don'?t|dont|don'nt)\s(?:answer|respond to|reply to)\s%G2%(?:question|request|query)\s%G7%(?:but|instead)\s(?:tell|say|write|print|output|give|show|reveal)",
        0.6,
    ),
    (
        r"(?:attention|achtung|warning|urgent)\s?[-:!]+\s?(?:stop|stopp|halt)\b",
        0.5,
    ),
    // German.
    (
        r"(?:nun|jetzt)\s(?:folgen|kommen|kommt)\s(?:noch\s)?(?:ein paar\s|einige\s)?(?:weitere|neue|andere|zusatzliche)\s(?:aufgaben?|anweisungen|auftrage|befehle)",
        0.6,
    ),
    (
        r"(?:lass|lasse|lassen sie)\s(?:alle\s)?(?:die\s)?(?:vorherigen|bisherigen|fruheren|obigen)\s(?:informationen|anweisungen|aufgaben|auftrage|vorgaben)\s(?:hinter (?:dir|sich)|weg|beiseite|fallen)",
        0.8,
    ),
    (
        r"(?:du hast|sie haben|you(?:'ve| have))\s(?:den|the)\s(?:ersten|first)\s(?:test|teil|part)\s(?:bestanden|passed)",
        0.45,
    ),
    (
        r"(?:beachte|befolge|beachten sie|befolgen sie|folge|folgen sie)\s%G3%(?:vorherig|bisherig|obig|alle|deine|ihre)\S*\s%G2%(?:regeln|anweisung\S*|vorgaben|instruktion\S*|befehle)\s(?:nicht|nicht mehr)",
        0.85,
    ),
    (
        r"(?:hore|horen sie)\snicht\s(?:mehr\s)?auf\s%G3%(?:zuvor|vorher|bisher|vorherig|davor)",
        0.8,
    ),
    (
        r"(?:abweichend|im gegensatz)\s(?:zu|von)\s(?:den\s)?(?:vorherigen|bisherigen|obigen|vorangegangenen)",
        0.75,
    ),
    (
        r"(?:vergiss|vergessen sie)\s(?:alles\s)?(?:davor|zuvor|bisherige|was (?:ich|wir) (?:gesagt|besprochen))",
        0.7,
    ),
    (
        r"(?:ignorier|vergiss|vergessen|missacht|uberspring|verwirf|verwerfe|beachte\s%G2%nicht|befolge\s%G2%nicht|setze\s%G2%ausser kraft)\S*\s%G4%(?:vorherig|bisherig|obig|vorangegangen|vorhergehend|alle|deine|ihre|fruher|ursprunglich|bereits|gegeben|system)\S*\s%G3%(?:anweisung|anleitung|instruktion|befehl|regeln|aufgabe|vorgabe|richtlinie|prompt|einschrankung|informationen|kontext)",
        0.9,
    ),
    (
        r"(?:vergiss|ignoriere|vergessen sie|ignorieren sie)\s(?:alles|das alles|all das)\b",
        0.6,
    ),
    (
        r"(?:deine|ihre|die)\s(?:neue|eigentliche|wahre|einzige)\s(?:aufgabe|anweisung|rolle|mission)\s(?:ist|lautet|:)",
        0.5,
    ),
    (
        r"(?:ab jetzt|von nun an|ab sofort)[\s,]+(?:bist du|antwortest du|wirst du|sollst du|musst du|ignorierst du)",
        0.45,
    ),
    // French.
    (
        r"(?:ignore[rzs]?|oublie[rzs]?|ne tiens? pas compte|ne tenez pas compte|fais abstraction|faites abstraction|neglige[rz]?|passe outre|outrepasse[rz]?|ne suis pas|ne suivez pas)\S*\s%G5%(?:instructions?|consignes?|directives?|regles|ordres|indications|commandes|prompts?|taches?)\b",
        0.85,
    ),
    (
        r"(?:oublie[rz]?|ignore[rz]?)\s(?:tout|toutes? (?:les|tes|vos))\b",
        0.55,
    ),
    (
        r"(?:ta|votre)\s(?:nouvelle|vraie|seule|veritable)\s(?:tache|mission|instruction|consigne)\s(?:est|sera|:)",
        0.5,
    ),
    (
        r"(?:a partir de maintenant|desormais|dorenavant)[\s,]+(?:tu|vous)\s",
        0.4,
    ),
    // Spanish.
    (
        r"(?:ignora|ignore|ignoren|ignorar|olvida|olvide|olviden|olvidar|omite|omita|descarta|descarte|haz caso omiso|hagan caso omiso|no hagas caso|no sigas|pasa por alto|desobedece)\S*\s%G5%(?:instrucciones|instruccion|indicaciones|ordenes|reglas|directrices|consignas|directivas|comandos|tareas?)\b",
        0.85,
    ),
    (
        r"(?:olvida|olvidate de|ignora)\s(?:todo|todas? (?:las|tus))\b",
        0.55,
    ),
    (
        r"(?:tu|su)\s(?:nueva|verdadera|unica|real)\s(?:tarea|mision|instruccion|funcion)\s(?:es|sera|:)",
        0.5,
    ),
    (
        r"(?:a partir de ahora|de ahora en adelante|desde ahora)[\s,]+(?:eres|seras|vas a|debes|responderas|ignora)",
        0.45,
    ),
    // Italian.
    (
        r"(?:ignora|ignori|ignorate|ignorare|dimentica|dimentichi|dimenticate|dimenticare|tralascia|trascura|non tenere conto|non seguire|non considerare|scarta)\S*\s%G5%(?:istruzioni|istruzione|indicazioni|regole|direttive|ordini|consegne|comandi|compiti?)\b",
        0.85,
    ),
    (r"(?:dimentica|ignora)\s(?:tutto|tutte le|tutti i)\b", 0.55),
    (
        r"(?:il tuo|il suo)\s(?:nuovo|vero|unico)\s(?:compito|obiettivo|ruolo)\s(?:e|sara|:)",
        0.5,
    ),
    (
        r"(?:da ora in poi|d'ora in poi|da adesso)[\s,]+(?:sei|sarai|devi|rispondi|ignora)",
        0.45,
    ),
    // Portuguese.
    (
        r"(?:ignore|ignora|ignorem|ignorar|esqueca|esquece|esquecam|esquecer|desconsidere|desconsidera|descarte|nao siga|nao obedeca|deixe de lado)\S*\s%G5%(?:instrucoes|instrucao|orientacoes|regras|diretrizes|ordens|comandos|diretivas|tarefas?)\b",
        0.85,
    ),
    (
        r"(?:esqueca|esquece|ignore)\s(?:tudo|todas as|todos os)\b",
        0.55,
    ),
    (
        r"(?:sua|tua)\s(?:nova|verdadeira|unica|real)\s(?:tarefa|missao|instrucao|funcao)\s(?:e|sera|:)",
        0.5,
    ),
    (
        r"(?:a partir de agora|de agora em diante)[\s,]+(?:voce|tu|ignore|responda|seja)",
        0.45,
    ),
    // Dutch.
    (
        r"(?:negeer|negeren|vergeet|vergeten|sla\s%G3%over|volg\s%G3%niet|houd geen rekening met|schuif\s%G2%opzij)\S*\s%G5%(?:instructies|instructie|aanwijzingen|opdrachten|opdracht|regels|richtlijnen|bevelen|prompts?|taken?)\b",
        0.85,
    ),
    (r"(?:vergeet|negeer)\s(?:alles|al het|al je|al uw)\b", 0.55),
    (
        r"(?:je|jouw|uw)\s(?:nieuwe|echte|enige|werkelijke)\s(?:taak|opdracht|rol|missie)\s(?:is|wordt|:)",
        0.5,
    ),
    (
        r"(?:vanaf nu|voortaan|van nu af aan)[\s,]+(?:ben je|ben jij|moet je|antwoord|negeer|zeg)",
        0.45,
    ),
    // Russian (й is normalised to и).
    (
        r"(?:игнориру|проигнориру|игнорировать|забуд|забыть|забудьте|не обращаи внимания на|не обращаите внимания на|отбрось|отбросьте|пренебреги|не следуи|не выполняи|отмени)\S*\s%G5%(?:инструкц|указани|правил|команд|промпт|директив|задани|ограничени|установк)\S*",
        0.85,
    ),
    (r"(?:забудь|забудьте|игнорируи)\s(?:все|всё|всего)\b", 0.55),
    (
        r"(?:твоя|ваша)\s(?:новая|настоящая|единственная)\s(?:задача|роль|инструкция|цель)",
        0.5,
    ),
    (
        r"(?:с этого момента|отныне|теперь)[\s,]+(?:ты|вы)\s(?:будешь|должен|должны|являешься|отвечаешь)",
        0.4,
    ),
    // Chinese (simplified and traditional).
    (
        r"(?:忽略|忽視|忽视|无视|無視|忘记|忘記|忘掉|不要理会|不要理會|别管|別管|跳过|跳過|不要遵守|不要遵循|抛开|拋開|放弃|放棄)[^。！？\n]{0,14}(?:指令|指示|说明|說明|规则|規則|提示|命令|要求|设定|設定|约束|約束|任务|任務|内容|內容)",
        0.85,
    ),
    (
        r"(?:你的|您的)(?:新|真正的|唯一的)(?:任务|任務|指令|角色|目标|目標)(?:是|为|為|：|:)",
        0.5,
    ),
    (
        r"(?:从现在开始|從現在開始|从现在起|從現在起)[，,\s]*(?:你|您)",
        0.35,
    ),
    // Japanese.
    (
        r"(?:指示|命令|ルール|指令|プロンプト|設定|制約|規則|ガイドライン|タスク)[^。\n]{0,8}(?:無視|忘れ|従わな|従うな|破棄|取り消)",
        0.85,
    ),
    (
        r"(?:全て|すべて|今まで|これまで|以前|前|上記)の?(?:こと|内容)?を?(?:無視|忘れて)",
        0.6,
    ),
    (
        r"(?:新しい|本当の)(?:指示|任務|タスク|役割)(?:は|：|:)",
        0.45,
    ),
    // Polish, Turkish, Indonesian, Vietnamese, Ukrainian, Arabic, Hindi: the core
    // "ignore/forget the (previous) instructions" (diacritics are stripped, Turkish ı
    // folds to i inside Latin words).
    (
        r"(?:zignoruj|ignoruj|zapomnij|pomin|nie stosuj sie do|nie przestrzegaj|nie wykonuj)\S*\s%G4%(?:instrukcj|polecen|zasad|regul|wytycz|wskazow)\S*",
        0.85,
    ),
    (
        r"(?:onceki|yukaridaki|tum|butun|verilen|sistem|ilk)\S*\s%G3%(?:talimat|komut|kural|yonerge|yonlendirme)\S*\s%G2%(?:gormezden gel|unut|yok say|dikkate alma|uygulama|takma|iptal et)",
        0.85,
    ),
    (
        r"(?:unut|gormezden gel|yok say)\S*\s%G3%(?:onceki|tum|butun|verilen)\S*\s%G2%(?:talimat|komut|kural|yonerge)",
        0.85,
    ),
    (
        r"(?:abaikan|lupakan|hiraukan|jangan ikuti|jangan patuhi|acuhkan)\s%G4%(?:instruksi|perintah|petunjuk|aturan|arahan|pedoman)",
        0.85,
    ),
    (
        r"(?:bo qua|quen|phot lo|khong (?:can )?(?:lam theo|tuan theo))\s%G4%(?:huong dan|chi dan|lenh|quy tac|chi thi|yeu cau)",
        0.85,
    ),
    (
        r"(?:ігнору|проігнору|забудь|забудьте|не виконуи|не дотримуися)\S*\s%G5%(?:інструкц|вказівк|правил|команд|настанов)\S*",
        0.85,
    ),
    (
        r"(?:تجاهل|تجاهلي|تجاهلوا|انس|انسى|انسي|لا تتبع|لا تلتزم)[^.\n]{0,24}(?:التعليمات|الأوامر|الاوامر|التوجيهات|القواعد|تعليمات)",
        0.85,
    ),
    (
        r"(?:निर्देश|आदेश|नियम|हिदायत)[^।\n]{0,24}(?:अनदेखा|नजरअंदाज|नज़रअंदाज|भूल जा|मत मान|ध्यान मत|न मान)",
        0.85,
    ),
    // Korean.
    (
        r"(?:이전|위의|앞의|모든|기존)[^.\n]{0,10}(?:지시|명령|지침|규칙|프롬프트|설정)[^.\n]{0,8}(?:무시|잊어|따르지)",
        0.85,
    ),
];
