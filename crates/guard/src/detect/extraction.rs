//! System-prompt extraction: requests to reveal, repeat or summarise the hidden
//! instructions, the text "above", or a secret the system prompt holds.

pub(crate) const PATTERNS: &[(&str, f32)] = &[
    (
        r"(?:reveal|show|print|display|output|repeat|tell|give|share|dump|leak|disclose|expose|recite|write out|spell out|list|return|paste|copy|provide|send|summarize|summarise|translate|what (?:is|are|was|were))\S*\s%G3%(?:your|ur|the|its|initial|original|hidden|secret|internal|full|exact|entire|complete|verbatim)\s%G2%(?:system|initial|original|hidden|secret|internal|developer|pre-?prompt|starting|first|preset|underlying|confidential)\s?(?:prompt|instructions?|message|directives?|rules|guidelines|configuration|context|setup)",
        0.75,
    ),
    (
        r"(?:your|ur)\s(?:system|initial|original|hidden|secret|internal|developer|full|exact|entire|complete|starting|first|preset|underlying|confidential)\s(?:prompt|instructions|message|directives|configuration|rules)",
        0.45,
    ),
    (
        r"(?:repeat|print|output|show|write|copy|return|recite|echo|paste|display)\s%G3%(?:everything|all|the (?:text|words|content|message|instructions|lines?)|text|words|content)\s%G2%(?:above|before (?:this|my)|prior to (?:this|my)|preceding|at the (?:beginning|start|top))",
        0.75,
    ),
    (
        r"(?:words|text|everything|instructions|content)\s(?:above|before)\s(?:this (?:line|message|point|sentence)|the (?:first|user) message)",
        0.55,
    ),
    (
        r"(?:starting|beginning|begin|start)\s(?:with|from)\s[\x22'`“]?(?:you are|you're|your instructions|system:|ты|tu es|du bist|eres|sei|voce e)",
        0.65,
    ),
    (
        r"(?:what|which)\s(?:instructions|rules|guidelines|directives)\s(?:were you|have you been|did you get|you were)\s(?:given|told|programmed|provided|instructed)",
        0.6,
    ),
    (
        r"(?:what|tell me)\s%G2%(?:is|was)\s(?:the|your)\s(?:secret|password|passphrase|secret key|hidden word|code ?word|pin)\b",
        0.5,
    ),
    (
        r"(?:reveal|tell|give|spell|show|share|leak|print)\s%G3%(?:the|your)\s(?:secret|password|passphrase|hidden word|code ?word|secret key)\b",
        0.55,
    ),
    (
        r"(?:ignore|without)\s%G3%(?:confidential|secret)\S*\s%G2%(?:and|,)?\s?(?:reveal|show|tell|print)",
        0.6,
    ),
    (
        r"(?:echo|repeat|print|show|output|reveal|return|dump)\s%G4%(?:configuration|instructions?|message|prompt|rules|setup)\s(?:you\s(?:received|got|were given|have)|(?:that\s)?(?:came\s)?from your (?:operator|developer|creator|admin|deployer))",
        0.7,
    ),
    (
        r"(?:your|the)\s(?:pre-?prompt|meta-?prompt|preamble|hidden prompt|secret prompt|prompt template)\b",
        0.55,
    ),
    // Other languages.
    (
        r"(?:zeig|gib|nenn|verrat|wiederhol|drucke?|schreib|teile?)\S*\s%G4%(?:system-?prompt|systemanweisung|systemnachricht|anfangsanweisung|ursprunglich\S*\s(?:anweisung|prompt|instruktion)|versteckt\S*\s(?:anweisung|prompt)|deine\s(?:anweisungen|instruktionen|vorgaben)|dein\s(?:prompt|passwort)|das passwort)",
        0.75,
    ),
    (
        r"(?:montre|affiche|revele|donne|repete|ecris|dis|imprime|partage|communique)\S*\s%G4%(?:prompt systeme|prompt du systeme|instructions? (?:initiales|systeme|du systeme|d'origine|originales|cachees|secretes)|ton prompt|votre prompt|tes instructions|vos instructions|le mot de passe)",
        0.75,
    ),
    (
        r"(?:muestra|muestrame|revela|dime|repite|imprime|ensename|dame|comparte|escribe)\S*\s%G4%(?:prompt del sistema|prompt de sistema|instrucciones (?:iniciales|del sistema|de sistema|originales|ocultas|secretas)|tu prompt|tus instrucciones|la contrasena)",
        0.75,
    ),
    (
        r"(?:mostra|mostrami|rivela|dimmi|ripeti|stampa|scrivi|condividi)\S*\s%G4%(?:prompt di sistema|prompt del sistema|istruzioni (?:iniziali|di sistema|del sistema|originali|nascoste|segrete)|tuo prompt|tue istruzioni|la password)",
        0.75,
    ),
    (
        r"(?:mostre|mostra|revele|revela|diga|diz|repita|repete|imprima|escreva|compartilhe)\S*\s%G4%(?:prompt do sistema|prompt de sistema|instrucoes (?:iniciais|do sistema|de sistema|originais|ocultas|secretas)|seu prompt|suas instrucoes|tuas instrucoes|a senha)",
        0.75,
    ),
    (
        r"(?:toon|laat|geef|herhaal|onthul|vertel|print|deel|schrijf)\S*\s%G4%(?:systeemprompt|systeem-?instructies|systeem prompt|oorspronkelijke instructies|verborgen instructies|je prompt|jouw prompt|je instructies|jouw instructies|het wachtwoord)",
        0.75,
    ),
    (
        r"(?:покажи|выведи|раскрои|повтори|напиши|скажи|сообщи|распечатаи|дaи|дай)\S*\s%G4%(?:системн\S*\s(?:промпт|подсказк|инструкц|сообщени)|исходн\S*\s(?:инструкц|промпт)|скрыт\S*\s(?:инструкц|промпт)|сво\S*\s(?:инструкц|промпт)|твои\s(?:инструкц|промпт)|пароль)",
        0.75,
    ),
    (
        r"(?:系统提示|系統提示|系统指令|系統指令|初始指令|原始指令|隐藏指令|隱藏指令|提示词|提示詞|系统消息|密码|密碼)[^。！？\n]{0,10}(?:输出|輸出|显示|顯示|告诉|告訴|重复|重複|透露|打印|发给|給我|给我|是什么|是什麼)",
        0.75,
    ),
    (
        r"(?:输出|輸出|显示|顯示|告诉我|告訴我|重复|重複|透露|打印|给我看|給我看)[^。！？\n]{0,10}(?:系统提示|系統提示|系统指令|系統指令|初始指令|原始指令|隐藏指令|提示词|提示詞|系统消息|密码|密碼)",
        0.75,
    ),
    (
        r"(?:システムプロンプト|初期指示|元の指示|隠された指示|最初の指示|設定された指示|パスワード)[^。\n]{0,10}(?:教えて|表示|出力|見せて|繰り返|書き出|開示)",
        0.75,
    ),
];
